"""The guided demo (``run_client.py --demo``, ``python -m rmi_kv.demo``), run as people run it:
the whole walkthrough on its embedded cluster, one step alone, a running cluster,
a failed check, Ctrl-C, and no process or data left behind."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from rmi_kv import demo

ROOT = Path(__file__).resolve().parents[2]

TITLES = {
    1: "Step 1 — The cluster",
    2: "Step 2 — Pre-populate the store",
    3: "Step 3 — PUT, GET and DELETE through every replica",
    4: "Step 4 — One write, message by message",
    5: "Step 5 — Concurrent conflicting writes",
    6: "Step 6 — A participant crashes before voting",
    7: "Step 7 — The coordinator crashes after its decision",
    8: "Step 8 — A replica dies: failover to a new epoch",
    9: "Step 9 — The coordinator dies: a new epoch takes over",
    10: "Step 10 — Summary",
}


def environment(columns: Optional[int] = None) -> dict:
    """The demo's environment: no colour settings or failpoints from outside; COLUMNS only when given."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("NO_COLOR", "FORCE_COLOR", "RMI_KV_FAILPOINTS", "COLUMNS")}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return env


def run_demo(*args: str, timeout: float = 90.0, columns: Optional[int] = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rmi_kv.demo", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=environment(columns), stdin=subprocess.DEVNULL)


def flat(text: str) -> str:
    """``text`` with every run of spaces and line breaks as one space: the demo wraps its lines
    between words at the terminal's width."""
    return " ".join(text.split())


def data_dir_of(transcript: str) -> str:
    match = re.search(r"data directory: (\S+) \(removed at the end\)", transcript)
    assert match, "the demo should say where its embedded cluster keeps its data"
    return match.group(1)


def processes_using(path: str) -> list[str]:
    """Command lines of running processes that mention ``path`` (the cluster's children do)."""
    listing = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [line for line in listing.splitlines() if path in line]


def assert_nothing_left(data_dir: str) -> None:
    assert not Path(data_dir).exists(), f"{data_dir} should have been removed"
    assert processes_using(data_dir) == [], "the embedded cluster's processes should all have stopped"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_whole_demo_on_its_embedded_cluster(tmp_path):
    """In a terminal 80 columns wide: every line fits (so none breaks mid-word), no cell is cut, and the
    record keeps whole cells too."""
    record = tmp_path / "demo.txt"
    started = time.monotonic()
    result = run_demo("--record", str(record), "--no-color", columns=80)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    assert elapsed < 60, f"the demo should take well under a minute, took {elapsed:.1f} s"
    transcript = record.read_text("utf-8")
    assert f"transcript saved to {record}" in result.stderr
    assert "\x1b[" not in transcript and "\x1b[" not in result.stdout  # --no-color, and a plain-text record
    for text in (result.stdout, transcript):
        too_long = [line for line in text.splitlines() if len(line) > 80 or "…" in line]
        assert too_long == [], too_long
    assert '"elderberry"' in transcript and "rmi_kv.replica.replica1" in transcript  # whole cells
    assert re.search(r"replica1:[0-9a-f]{8}:\d+:\d{16}", transcript), "a whole txid in the in-doubt table"
    said = flat(transcript)  # what it says, whatever the width its lines were wrapped at

    positions = [transcript.index(title) for title in TITLES.values()]
    assert positions == sorted(positions), "the steps come in order"
    assert "✘" not in transcript
    for line in (
        "✔ 5 replicas are registered in the name server",
        "✔ every replica holds all 10 keys",
        "✔ all 15 requests gave the expected answer",
        "✔ every replica agrees on all 10 keys (50 reads)",
        "✔ every replica voted YES",
        "✔ every other replica applied it and acknowledged (haveCommitted)",
        "✔ every writer got a definite answer",
        "✔ every replica holds the same value, the last write to commit",
        "✔ the client got TransactionAborted naming replica4",
        "✔ reads through the 4 other replicas still work",
        "✔ replica4 is back: the new write committed on all 5 replicas",
        "✔ the client got OutcomeUnknown",
        "✔ the 4 participants voted YES and now wait in doubt",
        "✔ recovery finished the commit: all 5 replicas hold \"new\"",
        "✔ no replica diverged: all 5 hold the same data (equal digests)",
    ):
        assert line in transcript, line
    # the crash steps show the strict protocol first: one replica down stops every write
    assert "the replicas run with --failover off, the textbook's strict protocol, until step 8" in said
    strict = transcript[transcript.index(TITLES[6]):transcript.index(TITLES[8])]
    assert strict.count("failover off: every write needs the votes of all 5 members (epoch 0)") == 3
    assert "✔ writes wait for replica4: this one aborts too (every member must vote)" in strict
    check_failover_step(transcript[transcript.index(TITLES[8]):transcript.index(TITLES[9])])
    takeover = transcript[transcript.index(TITLES[9]):transcript.index(TITLES[10])]
    check_takeover_step(takeover)
    assert "every replica restarts" not in takeover, "after step 8, failover is on already"
    # the traced write shows each message of the protocol, with times
    for message in ("canCommit", "vote", "decision", "doCommit", "haveCommitted"):
        assert re.search(rf"\d+\.\d\d\s+{message}\s", transcript), message
    # the summary: every step but itself passed
    summary = transcript[transcript.index(TITLES[10]):]
    assert summary.count("✔ passed") == 9
    assert re.search(r"^ +8 +failover: new epoch, writes go on, rejoin +(\d+)/\1 +✔ passed", summary, re.M)
    seconds = re.search(r"^ +9 +take-over: epochs settle in-doubt writes +(\d+)/\1 +✔ passed +([\d.]+)",
                        summary, re.M)
    assert seconds and float(seconds.group(2)) < 15, "the take-over step takes a few seconds"
    assert re.search(r"✔ all (\d+) checks held; the demo took [\d.]+ s\n", summary)
    checks = int(re.search(r"all (\d+) checks held", summary).group(1))
    before_summary = transcript[:transcript.index(TITLES[10])].splitlines()
    assert checks == sum(1 for line in before_summary if line.startswith("✔ "))  # each check, one line
    assert "✔ all" in result.stdout  # the terminal saw what the record holds
    assert_nothing_left(data_dir_of(transcript))


def check_failover_step(step: str) -> None:
    """Step 8: the replicas restart with failover on; replica4 is killed, writes abort while its lease runs
    out, the others form a new epoch and writes go on; replica4 returns, catches up, and is a member again."""
    lines = step.splitlines()
    said = flat(step)  # for sentences: a long one is wrapped between words
    assert "▸ every replica restarts with --failover on (until now: --failover off)" in lines
    first = int(re.search(r"✔ all 5 replicas are members of epoch (\d+), each with a read lease", said).group(1))
    assert f"epoch {first} of replica1, replica2, replica3, replica4, replica5 (majority 3 of 5)" in step
    for name in ("replica1", "replica2", "replica3", "replica4", "replica5"):  # role, epoch, lease, heard, digest
        assert re.search(rf"^  {name} +member +{first} +\d\.\d\d s left +\d\.\d\d s ago +[0-9a-f]{{12}}  $",
                         step, re.M), name
    # the aborted attempts, why they aborted, and the one that committed
    assert re.search(r"^  [\d.]+ (to [\d.]+ )?s +\d+ +aborted: replica4 is unreachable \(", step, re.M)
    assert re.search(r"^  [\d.]+ s +1 +committed", step, re.M)
    assert re.search(r"✔ writes abort at first: \d+ attempts aborted, the first naming replica4", said)
    assert re.search(r"✔ [\d.]+ s after the kill a write committed without replica4 \(its lease: 1 s\)", said)
    assert "replica1, replica2, replica3, replica5: a replica left out may still hold a read lease" in said or \
        "meanwhile, why" not in said, "why the epoch waited, the voters' answers grouped"
    # the others' epoch, with replica4 down and last heard a while ago
    second = int(re.search(r"✔ the 4 others formed epoch (\d+) of replica1, replica2, replica3, replica5: "
                           r"a majority of the 5 replicas", said).group(1))
    assert second > first
    assert f"epoch {second} of replica1, replica2, replica3, replica5 (majority 3 of 5)" in lines
    assert re.search(r"^  replica4 +unreachable +- +- +\d+\.\d\d s ago +- *$", step, re.M)
    assert "✔ writes go on: the write is on all 4 members" in lines
    assert "unhealthy: 1 of 5 members has a problem: replica4 (unreachable)" in lines
    # replica4 returns: catching up as a newcomer, then a member with a lease, equal digests
    rejoin = step[step.index("replica4 after it started again"):]
    third = int(re.search(r"✔ replica4 was taken in by epoch (\d+) as a newcomer, and caught up by copying from "
                          r"replica\d", said).group(1))
    assert third > second
    assert re.search(rf"^  [\d.]+ s +catching up +{third} +none +is catching up \(a newcomer", rejoin, re.M)
    assert f"a newcomer to epoch {third}: copying its" in flat(rejoin)  # the cell may go on below
    assert re.search(rf"^  [\d.]+ s +member +{third} +\d\.\d\d s left +healthy: a member with a read lease",
                     rejoin, re.M)
    assert re.search(r"✔ replica4 gave no stale read while it rejoined \((refused|answered)\)", said)
    assert f"✔ replica4 is a member of epoch {third} again, with a read lease" in lines
    assert '✔ replica4 holds the write made while it was down ("written without replica4")' in lines
    assert "✔ no replica diverged: all 5 hold the same data (equal digests)" in lines
    digests = set(re.findall(rf"^  replica\d +member +{third} +\d\.\d\d s left +\d\.\d\d s ago +([0-9a-f]{{12}})  $",
                             rejoin, re.M))
    assert len(digests) == 1, "the table after the rejoin shows five equal digests"


def check_takeover_step(step: str) -> None:
    """Step 9, with failover on: replica1 dies after forcing COMMIT (no member holds it: settled ABORT), then
    replica2 after its doCommit reached one participant (settled COMMIT). Each time the client hears
    OutcomeUnknown, the others hold the txid in doubt, a new epoch without the coordinator settles it, a
    read tells the outcome and the key is free; both return, and every digest is equal."""
    lines = step.splitlines()
    prose = " ".join(step.split())  # the wrapped sentences, joined again
    assert step.count("✔ the client got OutcomeUnknown: no answer came") == 2
    assert prose.count("client got OutcomeUnknown: put was sent to replica") == 2
    txids = re.findall(r"^✔ its transaction waits in doubt: (replica\d:\S+)$", step, re.M)
    assert [txid.split(":")[0] for txid in txids] == ["replica1", "replica2"]
    abort, commit = step.split("replica2 coordinates a write and dies", 1)
    for part, txid, outcome, coordinator, doubting, read in ((abort, txids[0], "ABORT", "replica1", 4, "old"),
                                                             (commit, txids[1], "COMMIT", "replica2", 2, "new")):
        # the participants hold the txid in doubt, its key locked
        assert len(re.findall(rf"^  replica\d +PREPARED: key locked +{txid}  +$", part, re.M)) == doubting
        # the new epoch without the coordinator settles it, proposed by a member that is not the coordinator
        settled = re.search(rf"^  {txid} +{outcome} +(replica\d) \(epoch (\d+)\)", part, re.M)
        assert settled, f"{txid} settled {outcome}"
        proposer, number = settled.groups()
        assert proposer != coordinator
        assert f"✔ epoch {number}, without {coordinator}, settled it {outcome}; every member applied it" in part
        assert f"✔ {proposer} proposed the epoch and settled it, asking every member" in part
        assert re.search(rf"^epoch {number} of (replica\d, )*replica\d \(majority 3 of 5\)$", part, re.M)
        assert coordinator not in re.search(rf"^epoch {number} of (.*) \(", part, re.M).group(1)
        assert f"Why {outcome}:" in " ".join(part.split())
        assert f'✔ a read tells the outcome: all {doubting + (1 if outcome == "COMMIT" else 0)} give "{read}"' in part
        assert "✔ the key is free: the write committed" in part
    assert re.search(r'^  replica\d +COMMIT: reads "new" +none', commit, re.M), "one participant got the doCommit"
    assert "no member holds the COMMIT, only replica1, which is down" in prose
    assert "In step 7 this same crash, with --failover off, kept the key locked until replica1 came back" in prose
    # both coordinators return and agree: the same values and digests everywhere, nothing in doubt
    assert '✔ replica1 and replica2 agree: every replica gives "free again" for both keys' in lines
    assert "✔ no replica diverged: all 5 hold the same data (equal digests)" in lines
    rows = re.findall(r'^  (replica\d) +"free again" +"free again" +none +([0-9a-f]{12})  $', step, re.M)
    assert sorted(name for name, _ in rows) == [f"replica{n}" for n in range(1, 6)]
    assert len({digest for _, digest in rows}) == 1


def test_one_step_alone_sets_up_what_it_needs_and_records_html(tmp_path):
    record = tmp_path / "step4.html"
    result = run_demo("--step", "4", "--record", str(record), "--no-color", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert TITLES[4] in result.stdout
    assert not any(TITLES[n] in result.stdout for n in TITLES if n != 4)
    assert "✔ all 5 checks held" in result.stdout
    html = record.read_text("utf-8")
    assert html.lstrip().startswith("<!DOCTYPE html>") and "Step 4" in html and "haveCommitted" in html
    assert_nothing_left(data_dir_of(result.stdout))

    alone = run_demo("--step", "3", "--no-color", timeout=60)  # step 3 needs the course keys: it writes them
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert "set-up: the ten course keys written" in alone.stdout
    assert_nothing_left(data_dir_of(alone.stdout))


def test_the_take_over_step_alone_at_80_columns():
    """Step 9 alone turns failover on itself, and reads right in a terminal 80 columns wide: no line is longer,
    nothing is cut."""
    result = run_demo("--step", "9", "--no-color", columns=80, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    step = result.stdout[result.stdout.index(TITLES[9]) - len("╭─ "):result.stdout.index("✔ all ")]
    assert "▸ every replica restarts with --failover on (until now: --failover off)" in step
    check_takeover_step(step)
    too_long = [line for line in step.splitlines() if len(line) > 80 or "…" in line]
    assert too_long == [], too_long
    assert_nothing_left(data_dir_of(result.stdout))


def test_a_running_cluster_is_used_and_crash_steps_are_skipped(shared_cluster):
    result = run_demo("--ns-port", str(shared_cluster.ns_port), "--no-color", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"on the running cluster at 127.0.0.1:{shared_cluster.ns_port}" in result.stdout
    assert "data directory:" not in result.stdout  # it started nothing
    assert result.stdout.count("skipped: the demo does not crash replicas of a cluster it did not start") == 4
    assert "(skipped: steps 6, 7, 8, 9)" in result.stdout
    assert "✘" not in result.stdout

    explained = run_demo("--ns-port", str(shared_cluster.ns_port), "--allow-crash", "--step", "7", timeout=60)
    assert explained.returncode == 0, explained.stdout + explained.stderr
    assert "skipped: crash steps need replicas the demo started itself" in explained.stdout
    with shared_cluster.client() as kv:  # nothing was crashed
        assert all(status["reachable"] for status in kv.status())


def test_a_failed_check_exits_non_zero_naming_the_step(shared_cluster, monkeypatch, capsys):
    def broken_step(self):
        self.check(True, "this one held")
        self.check(False, "", "replica3 disagrees (simulated)")

    monkeypatch.setattr(demo.Demo, "step4", broken_step)
    code = demo.main(["--ns-port", str(shared_cluster.ns_port), "--step", "4", "--no-color"])
    out = capsys.readouterr().out
    assert code == 1
    assert "✘ replica3 disagrees (simulated)" in out
    assert "demo failed at step 4: replica3 disagrees (simulated)" in out

    def crashing_step(self):
        raise KeyError("a bug")

    monkeypatch.setattr(demo.Demo, "step2", crashing_step)
    code = demo.main(["--ns-port", str(shared_cluster.ns_port), "--step", "2", "--no-color"])
    out = capsys.readouterr().out
    assert code == 1
    assert "demo failed at step 2: unexpected KeyError: 'a bug'" in out
    assert "Traceback" not in out  # only with --debug


def test_no_name_server_where_one_was_asked_for():
    result = run_demo("--ns-port", str(free_port()), "--no-color", timeout=30)
    assert result.returncode == 1
    assert "no name server answers at 127.0.0.1:" in result.stdout
    assert "leave out --ns-host/--ns-port and the demo starts its own" in flat(result.stdout)
    bad = run_demo("--step", "11", timeout=30)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_ctrl_c_stops_the_embedded_cluster(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "rmi_kv.demo", "--no-color"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT, env=environment(),
                               stdin=subprocess.DEVNULL)
    data_dir = None
    try:
        assert process.stdout is not None
        for line in process.stdout:
            match = re.search(r"data directory: (\S+)", line)
            if match:
                data_dir = match.group(1)
            if TITLES[2] in line:
                process.send_signal(signal.SIGINT)
                break
        rest = process.stdout.read()
        code = process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert code == 130
    assert "interrupted: stopping the cluster" in rest
    assert data_dir is not None
    assert_nothing_left(data_dir)
