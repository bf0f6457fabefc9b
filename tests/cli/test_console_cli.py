"""The client as people use it, against a real cluster: one-shot commands with
--json, script mode (--file and stdin, --keep-going), colours, and the
console itself, with latencies, ports and digests masked in its transcript."""
from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Callable

import pytest
from rich.console import Console

from rmi_kv.cli.console import ReplicaConsole
from rmi_kv.errors import InvalidRequest
from support.cli import ROOT, free_port, one_json, run_client
from support.console_input import ScriptedReader


def without_latency(document: dict) -> dict:
    assert isinstance(document.pop("latency_ms"), float)
    return document


# ----------------------------------------------------------------- one-shot
def test_json_documents_and_exit_codes(shared_cluster):
    put = run_client(shared_cluster, "--json", "--replica", "replica1", "put", "json-key", "a value")
    assert (put.returncode, put.stderr) == (0, "")
    assert without_latency(one_json(put.stdout)) == {"ok": True, "command": "put", "key": "json-key",
                                                     "value": "a value"}
    get = run_client(shared_cluster, "--replica", "replica4", "get", "json-key", "--json")  # options after too
    assert without_latency(one_json(get.stdout)) == {"ok": True, "command": "get", "key": "json-key",
                                                     "value": "a value"}
    missing = run_client(shared_cluster, "--json", "get", "json-missing")
    assert (missing.returncode, missing.stdout) == (1, "")
    assert one_json(missing.stderr) == {"ok": False, "command": "get", "error": "KeyNotFound",
                                        "message": "key 'json-missing' not found", "exit_code": 1}
    too_long = run_client(shared_cluster, "--json", "put", "k" * 1100, "v")
    error = one_json(too_long.stderr)
    assert (too_long.returncode, error["error"], error["exit_code"]) == (2, "InvalidRequest", 2)
    assert "limit is 1024 bytes" in error["message"]
    unknown = run_client(shared_cluster, "--json", "frobnicate")
    assert unknown.returncode == 2 and one_json(unknown.stderr)["error"] == "UsageError"


def test_txn_with_trace_and_status_as_json(shared_cluster):
    txn = run_client(shared_cluster, "--json", "--trace", "--replica", "replica3",
                     "txn", "put", "t-a", "1,", "put", "t-b", "two words,", "delete", "t-gone")
    assert txn.returncode == 0, txn.stderr
    document = one_json(txn.stdout)
    assert document["writes"] == {"t-a": "1", "t-b": "two words", "t-gone": None}
    trace = document["trace"]
    assert trace["txid"].startswith("replica3:")
    voted_yes = {e["participant"] for e in trace["trace"] if e["message"] == "vote" and e["result"].startswith("YES")}
    assert voted_yes == set(shared_cluster.names)
    messages = [e["message"] for e in trace["trace"]]
    assert messages.index("decision") > max(i for i, m in enumerate(messages) if m == "vote")
    keys = one_json(run_client(shared_cluster, "--json", "keys", "t-").stdout)
    assert (keys["keys"], keys["more"], keys["next_after"]) == (["t-a", "t-b"], False, None)
    status = run_client(shared_cluster, "--json", "status")
    document = one_json(status.stdout)
    assert status.returncode == 0 and document["in_sync"] is True
    assert [r["name"] for r in document["replicas"]] == shared_cluster.names
    assert all(r["reachable"] and r["digest_matches"] for r in document["replicas"])


def test_no_name_server_is_exit_4_with_a_hint():
    result = run_client(free_port(), "--json", "put", "k", "v")
    assert (result.returncode, result.stdout) == (4, "")
    error = one_json(result.stderr)
    assert error["error"] == "NameServerUnavailable" and "run_nameserver.py" in error["hint"]


def test_colour_only_where_wanted(shared_cluster):
    forced = {"FORCE_COLOR": "1", "TERM": "xterm-256color"}
    coloured = run_client(shared_cluster, "get", "colour-missing", env=forced)
    assert coloured.returncode == 1 and "\x1b[" in coloured.stderr
    for args, env in [(("--no-color",), forced), ((), {**forced, "NO_COLOR": "1"})]:
        plain = run_client(shared_cluster, *args, "get", "colour-missing", env=env)
        assert (plain.returncode, plain.stderr) == (1, "key 'colour-missing' not found\n")
    run_client(shared_cluster, "put", "colour-key", "raw value")
    value = run_client(shared_cluster, "get", "colour-key", env=forced)
    assert value.stdout == "raw value\n", "values are printed as they are"


@pytest.mark.parametrize("args, script", [
    (["status"], None),  # a rich table
    (["get", "closed-pipe-key"], None),  # a raw value
    (["--json", "status"], None),
    (["keys", "closed-pipe-"], None),
    ([], "get closed-pipe-key\nstatus\n"),  # script mode
    (["--json"], "get closed-pipe-key\n"),
])
def test_a_closed_pipe_ends_quietly_as_after_sigpipe(shared_cluster, args, script):
    """``run_client.py status | head -1``: the reader leaves, which is no failure of ours."""
    assert run_client(shared_cluster, "put", "closed-pipe-key", "value").returncode == 0
    reader, writer = os.pipe()
    os.close(reader)  # the reader went away before the first line: every write meets EPIPE
    try:
        command = [sys.executable, str(ROOT / "run_client.py"), "--ns-port", str(shared_cluster.ns_port), *args]
        result = subprocess.run(command, stdout=writer, stderr=subprocess.PIPE, text=True, timeout=60,
                                input=script, stdin=None if script is not None else subprocess.DEVNULL)
    finally:
        os.close(writer)
    assert (result.returncode, result.stderr) == (141, "")


def test_keys_are_walked_in_pages_with_a_cursor(shared_cluster):
    """172 keys: the first 100, a notice on stderr naming the cursor, and the rest after it."""
    expected = [f"cursor-{number:03d}" for number in range(172)]
    with shared_cluster.client() as kv:
        kv.transaction({key: "v" for key in expected})
        with pytest.raises(InvalidRequest, match="a key must not be empty"):
            kv.keys("cursor-", 10, after="")
    first = run_client(shared_cluster, "keys", "cursor-")
    assert (first.returncode, first.stdout.splitlines()) == (0, expected[:100])
    assert first.stderr == "(showing 100 keys; more after 'cursor-099': run_client.py keys cursor- --after cursor-099)\n"
    rest = run_client(shared_cluster, "keys", "cursor-", "--after", "cursor-099")
    assert (rest.returncode, rest.stdout.splitlines(), rest.stderr) == (0, expected[100:], "")
    as_json = run_client(shared_cluster, "--json", "keys", "cursor-", "--limit", "60", "--after", "cursor-099")
    document = one_json(as_json.stdout)
    assert (as_json.returncode, as_json.stderr) == (0, "")
    assert (document["keys"], document["more"], document["next_after"]) == (expected[100:160], True, "cursor-159")
    script = run_client(shared_cluster, input="keys cursor- --limit 150\nkeys cursor- --after cursor-149 --limit 150\n")
    assert (script.returncode, script.stdout.splitlines()) == (0, expected)
    assert script.stderr == "(showing 150 keys; more after 'cursor-149': keys cursor- --after cursor-149 --limit 150)\n"


# -------------------------------------------------------------- script mode
def test_a_script_file_stops_at_the_first_failure(shared_cluster, tmp_path):
    script = tmp_path / "script.txt"
    script.write_text('# fill in\nput s1 "one value"\n\nget s1\nget s-missing   # fails\nput s2 after\n')
    stopped = run_client(shared_cluster, "--file", str(script))
    assert (stopped.returncode, stopped.stdout, stopped.stderr) == (
        1, "OK\none value\n", "line 5: key 's-missing' not found\n")
    assert run_client(shared_cluster, "get", "s2").returncode == 1, "nothing after the failure ran"
    going = run_client(shared_cluster, "--keep-going", "--file", str(script))
    assert (going.returncode, going.stdout) == (1, "OK\none value\nOK\n")
    assert run_client(shared_cluster, "get", "s2").stdout == "after\n"


def test_a_script_on_stdin(shared_cluster):
    result = run_client(shared_cluster, input="put p1 x\nget p1\nbogus line\nget p1\n")
    assert (result.returncode, result.stdout) == (2, "OK\nx\n")
    assert result.stderr.startswith("line 3: error: unknown command 'bogus'\n")
    as_json = run_client(shared_cluster, "--json", "--keep-going", input="get p1\nget p-missing\nkeys p\n")
    assert as_json.returncode == 1
    documents = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [(d["command"], d["line"]) for d in documents] == [("get", 1), ("keys", 3)]
    assert documents[1]["keys"] == ["p1"]
    failure = one_json(as_json.stderr)
    assert (failure["line"], failure["error"], failure["exit_code"]) == (2, "KeyNotFound", 1)


def test_the_console_on_piped_input(shared_cluster):
    result = run_client(shared_cluster, "-i", "--replica", "replica4", input='put c1 "v w"\nget c1\n')
    assert result.returncode == 0, result.stderr
    assert "rmi_kv replica4> put c1 \"v w\"\nOK (" in result.stdout
    assert re.search(r'rmi_kv replica4> get c1\n"v w" \(\d+\.\d\d ms\)\n', result.stdout)


# ------------------------------------------------------------------ console
def masked(transcript: str) -> str:
    transcript = re.sub(r"\(\d+\.\d\d ms\)", "(… ms)", transcript)
    transcript = re.sub(r"127\.0\.0\.1(', |:)\d+", r"127.0.0.1\1PORT", transcript)
    return re.sub(r"\b[0-9a-f]{12}\b", "<digest....>", transcript)


def check_trace(trace: str, names: list[str]) -> None:
    lines = trace.splitlines()
    assert re.fullmatch(r"two-phase commit replica2:\S+ \(coordinator replica2, 1 attempt\)", lines[0])
    # a phase heading is indented by two; a message line by more, and so is a result that went on below it
    headings = [line.strip() for line in lines[1:] if re.match(r"  \S", line)]
    assert [h.split(":")[0] for h in headings] == ["phase 1", "decision (at the coordinator)", "phase 2"]
    for name in names:
        assert re.search(rf"vote +{name} → replica2  YES after \d+\.\d\d ms", trace)
        if name != "replica2":
            assert re.search(rf"canCommit +replica2 → {name} +sent", trace)
            assert re.search(rf"haveCommitted +{name} → replica2  acknowledged after", trace)
    assert re.search(r"decision +replica2 +COMMIT forced to the log", trace)


def test_a_console_session_against_a_real_cluster(strict_cluster, tmp_path):
    cluster = strict_cluster
    buffer = io.StringIO()
    console = Console(file=buffer, width=100, color_system=None, highlight=False)
    steps = ['put color "blue sky"', "get color", "get nothing", "txn put a 1, put b 2", "keys", "status",
             "bogus", "trace on", "put color red", "trace off", lambda: cluster.stop_replica("replica5"),
             "put x 1", "use replica5", "status", "get color"]
    ReplicaConsole(cluster.client, console, ScriptedReader(console, steps), replica="replica2").run()
    transcript = masked(buffer.getvalue())
    trace = re.search(r"^two-phase commit replica2:.*?(?=\nrmi_kv replica2> trace off)", transcript,
                      re.S | re.M).group(0)
    check_trace(trace, cluster.names)
    assert transcript.replace(trace, "<trace>") == """\
rmi_kv console: type 'help' for the commands, 'quit' or Ctrl-D to leave
connected to replica2 (… ms)
rmi_kv replica2> put color "blue sky"
OK (… ms)
rmi_kv replica2> get color
"blue sky" (… ms)
rmi_kv replica2> get nothing
key 'nothing' not found (… ms)
rmi_kv replica2> txn put a 1, put b 2
OK: 2 writes committed atomically (… ms)
rmi_kv replica2> keys
1) "a"
2) "b"
3) "color"
3 keys (… ms)
rmi_kv replica2> status
replica   reachable  keys  digest        matches  in doubt  committed  aborted
──────────────────────────────────────────────────────────────────────────────
replica1  yes           3  <digest....>  yes             0          2        0
replica2  yes           3  <digest....>  yes             0          2        0
replica3  yes           3  <digest....>  yes             0          2        0
replica4  yes           3  <digest....>  yes             0          2        0
replica5  yes           3  <digest....>  yes             0          2        0
all reachable replicas hold the same data
failover off: every write needs the votes of all 5 members (epoch 0)
healthy: all 5 members reachable, serving and in sync
(… ms)
rmi_kv replica2> bogus
error: unknown command 'bogus'
hint: type 'help' for the list of commands
rmi_kv replica2> trace on
trace is on: every write shows its two-phase commit round
rmi_kv replica2> put color red
OK (… ms)
<trace>
rmi_kv replica2> trace off
trace is off
rmi_kv replica2> put x 1
error: transaction aborted on every replica, nothing was written (replica5: replica5 is unreachable \
(cannot connect to ('127.0.0.1', PORT): [Errno 111] Connection refused)) (… ms)
hint: start replica5 ('python run_server.py --name replica5'), then try again
rmi_kv replica2> use replica5
error: replica replica5 at 127.0.0.1:PORT is unreachable (cannot connect to ('127.0.0.1', PORT): \
[Errno 111] Connection refused) (… ms)
hint: is it running? start it with 'python run_server.py --name replica5'
still using replica2
rmi_kv replica2> status
replica   reachable  keys  digest        matches  in doubt  committed  aborted
──────────────────────────────────────────────────────────────────────────────
replica1  yes           3  <digest....>  yes             0          3        1
replica2  yes           3  <digest....>  yes             0          3        1
replica3  yes           3  <digest....>  yes             0          3        1
replica4  yes           3  <digest....>  yes             0          3        1
replica5  no            -  -             -               -          -        -
all reachable replicas hold the same data
failover off: every write needs the votes of all 5 members (epoch 0)
replica5 is unreachable (cannot connect to ('127.0.0.1', PORT): [Errno 111] Connection refused); \
is it running? start it with 'python run_server.py --name replica5'
unhealthy: 1 of 5 members has a problem: replica5 (unreachable)
(… ms)
rmi_kv replica2> get color
"red" (… ms)
"""
    # with a replica down, writes abort: exit 3, in a script too
    aborted = run_client(cluster, "--json", "--replica", "replica1", "put", "k", "v")
    error = one_json(aborted.stderr)
    assert (aborted.returncode, error["error"], list(error["replicas"])) == (3, "TransactionAborted", ["replica5"])
    assert "python run_server.py --name replica5" in error["hint"]
    script = tmp_path / "writes.txt"
    script.write_text("get color\nput k v\nget color\n")
    stopped = run_client(cluster, "--file", str(script))
    assert (stopped.returncode, stopped.stdout) == (3, "red\n")
    assert stopped.stderr.startswith("line 2: error: transaction aborted on every replica, nothing was written")


def ctrl_c_once_waiting(stop: threading.Event, fired: list) -> Callable[[], None]:
    """A console step: from now, the first time the main thread waits inside a client call
    (``KeyValueClient._invoke`` is on its stack), send it SIGINT, as Ctrl-C on a terminal does."""
    main = threading.main_thread().ident

    def waiting() -> bool:
        frame = sys._current_frames().get(main)
        while frame is not None:
            if frame.f_code.co_name == "_invoke" and frame.f_code.co_filename.endswith("client.py"):
                return True
            frame = frame.f_back
        return False

    def watch() -> None:
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            if waiting():
                fired.append(True)
                signal.pthread_kill(main, signal.SIGINT)
                return
            stop.wait(0.001)

    return lambda: threading.Thread(target=watch, daemon=True).start()


def test_ctrl_c_cancels_a_waiting_request_and_the_console_goes_on(strict_cluster):
    """replica5 paused (SIGSTOP): a write through replica1 waits for its vote, and 'use replica5'
    waits for its handshake; Ctrl-C cancels each, the console keeps running, and the prompt says
    replica1 is still connected. When replica5 itself stops answering, the prompt says so."""
    cluster = strict_cluster
    paused = cluster.replicas["replica5"]
    stop, fired = threading.Event(), []
    ctrl_c = ctrl_c_once_waiting(stop, fired)
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, color_system=None, highlight=False)
    steps = [lambda: paused.signal(signal.SIGSTOP), ctrl_c, "put k v", ctrl_c, "use replica5", "get unrelated",
             lambda: paused.signal(signal.SIGCONT), "use replica5",
             lambda: paused.signal(signal.SIGSTOP), ctrl_c, "get k",
             lambda: paused.signal(signal.SIGCONT), "get unrelated"]
    try:
        ReplicaConsole(cluster.client, console, ScriptedReader(console, steps), replica="replica1").run()
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C left the console:\n" + buffer.getvalue())
    finally:
        stop.set()
        paused.signal(signal.SIGCONT)
    transcript = masked(buffer.getvalue())
    assert len(fired) == 3, transcript
    assert """\
rmi_kv replica1> put k v
cancelled: the put may have been sent, so it may or may not commit; read the key to find out
rmi_kv replica1> use replica5
cancelled
still using replica1
rmi_kv replica1> get unrelated
key 'unrelated' not found (… ms)
rmi_kv replica1> use replica5
now using replica5 (… ms)
rmi_kv replica5> get k
cancelled
error: replica replica5 at 127.0.0.1:PORT is unreachable (""" in transcript
    assert transcript.endswith("""\
rmi_kv replica5 (not connected)> get unrelated
reconnected to replica5
key 'unrelated' not found (… ms)
"""), transcript
