"""The console, driven like a user would: lines in, an exact transcript out.

A fake cluster stands in for the replicas (the same calls as KeyValueClient)
and a fake clock makes every latency 1.25 ms, so whole sessions are compared
character for character. The same console runs against a real cluster in
tests/integration/test_console_cli.py.
"""
from __future__ import annotations

import io
import itertools
import sys
import textwrap
from pathlib import Path
from typing import Optional

import pytest
from rich.console import Console

from rmi_kv.cli.arguments import bench_arguments
from rmi_kv.cli.commands import SEPARATOR, Command, UsageError, argv_words, parse_line, tokenize
from rmi_kv.cli.console import ReplicaConsole
from rmi_kv.cli.failures import describe
from rmi_kv.cli.health import annotate_digests
from rmi_kv.cli.output import JsonOutput, PlainOutput
from rmi_kv.cli.reading import PromptReader, completion_choices
from rmi_kv.cli.script import ScriptSession, run_script
from rmi_kv.errors import NameServerUnavailable, ReplicaUnavailable, TransactionAborted
from support.console_input import ScriptedReader


# ---------------------------------------------------------------- the fakes
class FakeCluster:
    """Replicas in memory: ``down`` ones are unreachable, writes need all of them up."""

    def __init__(self, names=("replica1", "replica2", "replica3")) -> None:
        self.names = list(names)
        self.data: dict[str, str] = {}
        self.down: set[str] = set()
        self.nameserver_up = True
        self.clients: list[FakeClient] = []
        self.interrupt_next = False
        self.committed = 0
        #: name -> its status()["failover"], for replicas that run with failover on (None: fields absent)
        self.failover = None

    def connect(self, replica: Optional[str]) -> "FakeClient":
        client = FakeClient(self, replica)
        self.clients.append(client)
        return client


class FakeClient:
    def __init__(self, cluster: FakeCluster, replica: Optional[str]) -> None:
        self.cluster, self.replica, self.closed = cluster, replica, False

    def close(self) -> None:
        self.closed = True

    def replicas(self, refresh: bool = False) -> dict[str, str]:
        if not self.cluster.nameserver_up:
            raise NameServerUnavailable("no name server at 127.0.0.1:9090 (connection refused); "
                                        "start one with 'python run_nameserver.py --host 127.0.0.1 --port 9090'")
        return {name: f"PYRO:rmi_kv.replica.{name}@127.0.0.1:4000" for name in self.cluster.names}

    def _reach(self) -> None:
        assert not self.closed, "a closed client was used"
        if self.cluster.interrupt_next:
            self.cluster.interrupt_next = False
            raise KeyboardInterrupt
        name = self.replica or self.cluster.names[0]  # any replica: the first
        if name not in self.replicas():
            raise ReplicaUnavailable(f"no replica named {name!r} is registered (registered: "
                                     f"{', '.join(self.cluster.names)}); start it with "
                                     f"'python run_server.py --name {name}'", replica=name)
        if name in self.cluster.down:
            raise ReplicaUnavailable(f"replica {name} at 127.0.0.1:4000 is unreachable (connection refused); "
                                     f"is it running? start it with 'python run_server.py --name {name}'",
                                     replica=name)

    def _write(self, writes: dict) -> dict:
        self._reach()
        down = sorted(self.cluster.down)
        if down:
            reasons = {name: f"{name} is unreachable (connection refused)" for name in down}
            raise TransactionAborted("transaction aborted on every replica, nothing was written ("
                                     + "; ".join(f"{n}: {r}" for n, r in reasons.items()) + ")", replicas=reasons)
        for key, value in writes.items():
            if value is None:
                self.cluster.data.pop(key, None)
            else:
                self.cluster.data[key] = value
        self.cluster.committed += 1
        return self._trace()

    def _trace(self) -> dict:
        me = self.replica or self.cluster.names[0]
        others = [n for n in self.cluster.names if n != me]
        events = [(0.01 * i, "canCommit", name, "sent") for i, name in enumerate(others, 1)]
        events += [(0.05, "canCommit", me, "local")]
        events += [(1.0 + 0.01 * i, "vote", name, f"YES after {0.5 + i / 10:.2f} ms")
                   for i, name in enumerate(sorted(self.cluster.names))]
        events += [(1.5, "decision", me, "COMMIT forced to the log")]
        events += [(2.0 + 0.01 * i, "haveCommitted", name, f"acknowledged after {0.3 + i / 10:.2f} ms")
                   for i, name in enumerate([me] + others)]
        return {"txid": f"{me}:cafe:{self.cluster.committed}:1700000000000000", "attempts": 1,
                "trace": [{"at_ms": at, "message": m, "participant": p, "result": r} for at, m, p, r in events]}

    def ping(self) -> str:
        self._reach()
        return self.replica

    def get(self, key: str) -> Optional[str]:
        self._reach()
        return self.cluster.data.get(key)

    def put(self, key: str, value: str) -> None:
        self._write({key: value})

    def delete(self, key: str) -> bool:
        self._reach()
        existed = key in self.cluster.data
        if existed:
            self._write({key: None})
        return existed

    def transaction(self, writes: dict) -> None:
        self._write(writes)

    def traced(self, writes: dict) -> dict:
        return self._write(writes)

    def keys(self, prefix: str = "", limit: int = 100, *, after: Optional[str] = None) -> list[str]:
        self._reach()
        return sorted(k for k in self.cluster.data if k.startswith(prefix) and (after is None or k > after))[:limit]

    def status(self) -> list[dict]:
        self.replicas()
        result = []
        for name in self.cluster.names:
            common = {"name": name, "uri": f"PYRO:rmi_kv.replica.{name}@127.0.0.1:4000", "registered": True,
                      "latency_ms": 0.41}
            if name in self.cluster.down:
                result.append({**common, "reachable": False, "cause": "connection refused",
                               "error": f"replica {name} at 127.0.0.1:4000 is unreachable (connection refused); "
                                        f"is it running? start it with 'python run_server.py --name {name}'"})
            else:
                result.append({**common, "reachable": True, "serving": True, "refusal": None, "catching_up": False,
                               "keys": len(self.cluster.data), "digest": "0123456789abcdef" * 4, "in_doubt": [],
                               "in_doubt_ages": {}, "committed": self.cluster.committed, "aborted": 0,
                               "members": list(self.cluster.names)})
                if self.cluster.failover is not None:
                    result[-1]["failover"] = self.cluster.failover(name)
        return result


def fake_clock():
    """Each call is 1.25 ms after the one before: every latency shows as 1.25 ms."""
    ticks = itertools.count()
    return lambda: next(ticks) * 0.00125


def make_console(cluster: FakeCluster, lines, replica: Optional[str] = None, debug: bool = False, width: int = 100):
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, highlight=False, legacy_windows=False)
    source = io.StringIO("".join(line + "\n" for line in lines)) if isinstance(lines, list) else lines
    repl = ReplicaConsole(cluster.connect, console, source, replica=replica, clock=fake_clock(), debug=debug)
    return repl, buffer


def session(cluster: FakeCluster, lines, **options) -> str:
    repl, buffer = make_console(cluster, lines, **options)
    assert repl.run() == 0
    return buffer.getvalue()


def expected(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


# ------------------------------------------------------------- transcripts
def test_a_session_of_writes_reads_and_mistakes():
    cluster = FakeCluster()
    transcript = session(cluster, ['put color "blue sky"', "get color", "get nothing", "delete nothing",
                                   "txn put a 1, put b 2, delete color", "keys", "keys b", "frobnicate x", "gte a",
                                   "put onlykey", "help put", "", "# a comment", "quit", "get never-run"])
    assert transcript == expected("""
        rmi_kv console: type 'help' for the commands, 'quit' or Ctrl-D to leave
        connected to replica1 (1.25 ms)
        rmi_kv replica1> put color "blue sky"
        OK (1.25 ms)
        rmi_kv replica1> get color
        "blue sky" (1.25 ms)
        rmi_kv replica1> get nothing
        key 'nothing' not found (1.25 ms)
        rmi_kv replica1> delete nothing
        key 'nothing' not found (1.25 ms)
        rmi_kv replica1> txn put a 1, put b 2, delete color
        OK: 3 writes committed atomically (1.25 ms)
        rmi_kv replica1> keys
        1) "a"
        2) "b"
        2 keys (1.25 ms)
        rmi_kv replica1> keys b
        1) "b"
        1 key (1.25 ms)
        rmi_kv replica1> frobnicate x
        error: unknown command 'frobnicate'
        hint: type 'help' for the list of commands
        rmi_kv replica1> gte a
        error: unknown command 'gte'
        hint: did you mean 'get'? type 'help' for the list of commands
        rmi_kv replica1> put onlykey
        error: usage: put KEY VALUE
        hint: for example: put color "blue sky"
        rmi_kv replica1> help put
        put KEY VALUE
          set KEY to VALUE on every replica (one two-phase commit)
          example: put color "blue sky"
        rmi_kv replica1> 
        rmi_kv replica1> # a comment
        rmi_kv replica1> quit
        """)
    assert cluster.data == {"a": "1", "b": "2"}
    assert all(client.closed for client in cluster.clients), "the console closes every client it made"


def test_status_table_and_an_unreachable_replica():
    cluster = FakeCluster()
    cluster.down.add("replica3")
    transcript = session(cluster, ["status", "use replica3", "use replica9", "put k v", "get k"])
    assert transcript == expected("""
        rmi_kv console: type 'help' for the commands, 'quit' or Ctrl-D to leave
        connected to replica1 (1.25 ms)
        rmi_kv replica1> status
        replica   reachable  keys  digest        matches  in doubt  committed  aborted
        ──────────────────────────────────────────────────────────────────────────────
        replica1  yes           0  0123456789ab  yes             0          0        0
        replica2  yes           0  0123456789ab  yes             0          0        0
        replica3  no            -  -             -               -          -        -
        all reachable replicas hold the same data
        replica3 is unreachable (connection refused); is it running? start it with 'python run_server.py --name replica3'
        unhealthy: 1 of 3 members has a problem: replica3 (unreachable)
        (1.25 ms)
        rmi_kv replica1> use replica3
        error: replica replica3 at 127.0.0.1:4000 is unreachable (connection refused) (1.25 ms)
        hint: is it running? start it with 'python run_server.py --name replica3'
        still using replica1
        rmi_kv replica1> use replica9
        error: no replica named 'replica9' is registered (registered: replica1, replica2, replica3) (1.25 ms)
        hint: start it with 'python run_server.py --name replica9'
        still using replica1
        rmi_kv replica1> put k v
        error: transaction aborted on every replica, nothing was written (replica3: replica3 is unreachable (connection refused)) (1.25 ms)
        hint: start replica3 ('python run_server.py --name replica3'), then try again
        rmi_kv replica1> get k
        key 'k' not found (1.25 ms)
        """)


def test_health_and_member_list_in_the_console():
    cluster = FakeCluster()
    transcript = session(cluster, ["health", "member list", "member show", "help member"], replica="replica2")
    cluster.down.add("replica3")
    after = session(cluster, ["health", "member list"], replica="replica2")
    assert stripped(transcript) == expected("""
        rmi_kv console: type 'help' for the commands, 'quit' or Ctrl-D to leave
        connected to replica2 (1.25 ms)
        rmi_kv replica2> health
        replica1 (PYRO:rmi_kv.replica.replica1@127.0.0.1:4000) is healthy: serving, took 0.41 ms
        replica2 (PYRO:rmi_kv.replica.replica2@127.0.0.1:4000) is healthy: serving, took 0.41 ms
        replica3 (PYRO:rmi_kv.replica.replica3@127.0.0.1:4000) is healthy: serving, took 0.41 ms
        healthy: all 3 members reachable, serving and in sync
        (1.25 ms)
        rmi_kv replica2> member list
        member      reachable  role    uri
        ──────────────────────────────────────────────────────────────────────────
        replica1    yes        member  PYRO:rmi_kv.replica.replica1@127.0.0.1:4000
        replica2 *  yes        member  PYRO:rmi_kv.replica.replica2@127.0.0.1:4000
        replica3    yes        member  PYRO:rmi_kv.replica.replica3@127.0.0.1:4000
        * the replica this client uses
        (1.25 ms)
        rmi_kv replica2> member show
        error: usage: member list
        hint: for example: member list
        rmi_kv replica2> help member
        member list
          every member: name, URI, reachable or not, and its role
          example: member list
        """)
    assert stripped(after).split("\n", 2)[2] == expected("""
        rmi_kv replica2> health
        replica1 (PYRO:rmi_kv.replica.replica1@127.0.0.1:4000) is healthy: serving, took 0.41 ms
        replica2 (PYRO:rmi_kv.replica.replica2@127.0.0.1:4000) is healthy: serving, took 0.41 ms
        replica3 (PYRO:rmi_kv.replica.replica3@127.0.0.1:4000) is unhealthy: unreachable (connection refused)
        unhealthy: 1 of 3 members has a problem: replica3 (unreachable)
        (1.25 ms)
        rmi_kv replica2> member list
        member      reachable  role         uri
        ───────────────────────────────────────────────────────────────────────────────
        replica1    yes        member       PYRO:rmi_kv.replica.replica1@127.0.0.1:4000
        replica2 *  yes        member       PYRO:rmi_kv.replica.replica2@127.0.0.1:4000
        replica3    no         unreachable  PYRO:rmi_kv.replica.replica3@127.0.0.1:4000
        replica3 is unreachable (connection refused)
        * the replica this client uses
        (1.25 ms)
        """)


FIVE = [f"replica{index}" for index in range(1, 6)]


def failover_fields(number: int, members, *, role: str = "member", valid: bool = True, heard=None,
                    stalled=None) -> dict:
    """A replica's status()["failover"]: its lease has 0.84 s left while valid."""
    return {"failover": True, "epoch": {"number": number, "members": list(members), "newcomers": [], "source": None},
            "role": role, "promised": number, "fenced": False,
            "lease": {"seconds": 1.0, "valid": valid, "remaining": 0.84 if valid else 0.0},
            "heard": heard or {}, "stalled": stalled}


def test_status_health_and_member_list_show_the_epoch_roles_and_leases_in_80_columns():
    """replica4 is killed: the others still wait out its lease (replica1 says so), then form epoch 1;
    replica4 returns knowing only epoch 0. Every table fits 80 columns, nothing is cut."""
    cluster = FakeCluster(FIVE)
    cluster.down.add("replica4")
    waiting = ("epoch 1 of replica1, replica2, replica3, replica5 not installed: replica1: a replica left out may "
               "still hold a read lease; replica2: a replica left out may still hold a read lease; replica3: a "
               "replica left out may still hold a read lease; replica4: replica4 is unreachable (connection "
               "refused); replica5: a replica left out may still hold a read lease")

    def lease_runs_out(name: str) -> dict:
        heard = {peer: 0.96 if peer == "replica4" else 0.12 for peer in FIVE if peer != name}
        return failover_fields(0, FIVE, heard=heard, stalled=waiting if name == "replica1" else None)

    cluster.failover = lease_runs_out
    down = session(cluster, ["status", "health"], width=80)
    assert stripped(down).split("\n", 2)[2] == expected("""
        rmi_kv replica1> status
        replica   reachable  keys  digest        matches  in doubt  committed  aborted
        ──────────────────────────────────────────────────────────────────────────────
        replica1  yes           0  0123456789ab  yes             0          0        0
        replica2  yes           0  0123456789ab  yes             0          0        0
        replica3  yes           0  0123456789ab  yes             0          0        0
        replica4  no            -  -             -               -          -        -
        replica5  yes           0  0123456789ab  yes             0          0        0
        all reachable replicas hold the same data
        epoch 0 of replica1, replica2, replica3, replica4, replica5 (majority 3 of 5)
        replica   role         epoch        lease       heard
        ─────────────────────────────────────────────────────
        replica1  member           0  0.84 s left  0.12 s ago
        replica2  member           0  0.84 s left  0.12 s ago
        replica3  member           0  0.84 s left  0.12 s ago
        replica4  unreachable      -            -  0.96 s ago
        replica5  member           0  0.84 s left  0.12 s ago
        replica1: epoch 1 of replica1, replica2, replica3, replica5 not installed:
          replica1, replica2, replica3, replica5: a replica left out may still hold a read lease
          replica4: replica4 is unreachable (connection refused)
        replica4 is unreachable (connection refused); is it running? start it with 'python run_server.py --name replica4'
        unhealthy: 1 of 5 members has a problem: replica4 (unreachable)
        (1.25 ms)
        rmi_kv replica1> health
        replica1 (PYRO:rmi_kv.replica.replica1@127.0.0.1:4000) is healthy: serving, member of epoch 0, lease 0.84 s left, took 0.41 ms
        replica2 (PYRO:rmi_kv.replica.replica2@127.0.0.1:4000) is healthy: serving, member of epoch 0, lease 0.84 s left, took 0.41 ms
        replica3 (PYRO:rmi_kv.replica.replica3@127.0.0.1:4000) is healthy: serving, member of epoch 0, lease 0.84 s left, took 0.41 ms
        replica4 (PYRO:rmi_kv.replica.replica4@127.0.0.1:4000) is unhealthy: unreachable (connection refused)
        replica5 (PYRO:rmi_kv.replica.replica5@127.0.0.1:4000) is healthy: serving, member of epoch 0, lease 0.84 s left, took 0.41 ms
        epoch 0 of replica1, replica2, replica3, replica4, replica5 (majority 3 of 5)
        unhealthy: 1 of 5 members has a problem: replica4 (unreachable)
        (1.25 ms)
        """)

    four = [name for name in FIVE if name != "replica4"]
    cluster.down.clear()
    cluster.failover = lambda name: (failover_fields(0, FIVE, valid=False) if name == "replica4" else
                                     failover_fields(1, four, heard={peer: 0.12 for peer in FIVE if peer != name}))
    back = session(cluster, ["status", "health", "member list"], width=80)
    assert stripped(back).split("\n", 2)[2] == expected("""
        rmi_kv replica1> status
        replica   reachable  keys  digest        matches  in doubt  committed  aborted
        ──────────────────────────────────────────────────────────────────────────────
        replica1  yes           0  0123456789ab  yes             0          0        0
        replica2  yes           0  0123456789ab  yes             0          0        0
        replica3  yes           0  0123456789ab  yes             0          0        0
        replica4  yes           0  0123456789ab  yes             0          0        0
        replica5  yes           0  0123456789ab  yes             0          0        0
        all reachable replicas hold the same data
        epoch 1 of replica1, replica2, replica3, replica5 (majority 3 of 5)
        replica   role    epoch        lease       heard
        ────────────────────────────────────────────────
        replica1  member      1  0.84 s left  0.12 s ago
        replica2  member      1  0.84 s left  0.12 s ago
        replica3  member      1  0.84 s left  0.12 s ago
        replica4  member      0         none  0.12 s ago
        replica5  member      1  0.84 s left  0.12 s ago
        replica4 is outside the epoch (still in epoch 0; the others are in epoch 1: it refuses reads until it rejoins); the members take it into a new epoch once they hear it: ask again in a moment
        unhealthy: 1 of 5 members has a problem: replica4 (outside the epoch)
        (1.25 ms)
        rmi_kv replica1> health
        replica1 (PYRO:rmi_kv.replica.replica1@127.0.0.1:4000) is healthy: serving, member of epoch 1, lease 0.84 s left, took 0.41 ms
        replica2 (PYRO:rmi_kv.replica.replica2@127.0.0.1:4000) is healthy: serving, member of epoch 1, lease 0.84 s left, took 0.41 ms
        replica3 (PYRO:rmi_kv.replica.replica3@127.0.0.1:4000) is healthy: serving, member of epoch 1, lease 0.84 s left, took 0.41 ms
        replica4 (PYRO:rmi_kv.replica.replica4@127.0.0.1:4000) is unhealthy: outside the epoch (still in epoch 0; the others are in epoch 1: it refuses reads until it rejoins)
        replica5 (PYRO:rmi_kv.replica.replica5@127.0.0.1:4000) is healthy: serving, member of epoch 1, lease 0.84 s left, took 0.41 ms
        epoch 1 of replica1, replica2, replica3, replica5 (majority 3 of 5)
        unhealthy: 1 of 5 members has a problem: replica4 (outside the epoch)
        (1.25 ms)
        rmi_kv replica1> member list
        member      reachable  role     uri
        ───────────────────────────────────────────────────────────────────────────
        replica1 *  yes        member   PYRO:rmi_kv.replica.replica1@127.0.0.1:4000
        replica2    yes        member   PYRO:rmi_kv.replica.replica2@127.0.0.1:4000
        replica3    yes        member   PYRO:rmi_kv.replica.replica3@127.0.0.1:4000
        replica4    yes        outside  PYRO:rmi_kv.replica.replica4@127.0.0.1:4000
        replica5    yes        member   PYRO:rmi_kv.replica.replica5@127.0.0.1:4000
        replica4 is outside the epoch: it may have missed writes and refuses reads until the members take it in
        * the replica this client uses
        (1.25 ms)
        """)
    for transcript in (down, back):
        assert "…" not in transcript, "a cell was cut"
        tables = [line for line in transcript.splitlines() if line.startswith(("replica", "──")) and " is " not in line
                  and ": " not in line]
        assert tables and max(len(line.rstrip()) for line in tables) <= 80


def test_status_and_health_as_json_keep_every_failover_field():
    cluster = FakeCluster(FIVE)
    cluster.failover = lambda name: failover_fields(3, FIVE, heard={peer: 0.12 for peer in FIVE if peer != name})
    out, err = io.StringIO(), io.StringIO()
    output = JsonOutput(out, err)
    runner = ScriptSession(cluster.connect, output)
    code, _ = run_script(io.StringIO("status\nhealth\n"), runner, keep_going=False)
    runner.close()
    import json

    status, health = [json.loads(line) for line in out.getvalue().splitlines()]
    assert (code, err.getvalue()) == (0, "")
    for document in (status, health):
        assert document["epoch"] == {"failover": True, "number": 3, "members": FIVE, "newcomers": [], "source": None,
                                     "configured": 5, "majority": 3, "answering": FIVE, "has_majority": True}
    assert [r["failover"] for r in status["replicas"]] == [cluster.failover(name) for name in FIVE]
    assert [m["failover"] for m in health["members"]] == [cluster.failover(name) for name in FIVE]


def stripped(transcript: str) -> str:
    """The transcript without the spaces rich pads a table's last header cell with."""
    return "\n".join(line.rstrip() for line in transcript.split("\n"))


def scripted_session(cluster: FakeCluster, steps, **options) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=100, color_system=None, highlight=False)
    repl = ReplicaConsole(cluster.connect, console, ScriptedReader(console, steps), clock=fake_clock(), **options)
    assert repl.run() == 0
    return buffer.getvalue()


def test_the_prompt_follows_the_replica_and_reconnects():
    cluster = FakeCluster()

    def stop(name):
        return lambda: cluster.down.add(name)

    def start(name):
        return lambda: cluster.down.discard(name)

    transcript = scripted_session(cluster, [
        "put k v", stop("replica1"), "get k", "get k",       # chosen replica dies: switch to another
        "use replica1", start("replica1"), "use replica1",   # pinned: stays even when down
        stop("replica1"), "get k", "get k", start("replica1"), "get k"])
    assert transcript == expected("""
        rmi_kv console: type 'help' for the commands, 'quit' or Ctrl-D to leave
        connected to replica1 (1.25 ms)
        rmi_kv replica1> put k v
        OK (1.25 ms)
        rmi_kv replica1> get k
        error: replica replica1 at 127.0.0.1:4000 is unreachable (connection refused) (1.25 ms)
        hint: is it running? start it with 'python run_server.py --name replica1'
        rmi_kv replica1 (not connected)> get k
        replica1 is unreachable; now using replica2
        "v" (1.25 ms)
        rmi_kv replica2> use replica1
        error: replica replica1 at 127.0.0.1:4000 is unreachable (connection refused) (1.25 ms)
        hint: is it running? start it with 'python run_server.py --name replica1'
        still using replica2
        rmi_kv replica2> use replica1
        now using replica1 (1.25 ms)
        rmi_kv replica1> get k
        error: replica replica1 at 127.0.0.1:4000 is unreachable (connection refused) (1.25 ms)
        hint: is it running? start it with 'python run_server.py --name replica1'
        rmi_kv replica1 (not connected)> get k
        error: replica replica1 at 127.0.0.1:4000 is unreachable (connection refused)
        hint: is it running? start it with 'python run_server.py --name replica1'
        rmi_kv replica1 (not connected)> get k
        reconnected to replica1
        "v" (1.25 ms)
        """)


def test_every_replica_down():
    cluster = FakeCluster(names=("replica1", "replica2"))
    cluster.down.update(cluster.names)
    transcript = session(cluster, ["keys"])
    assert transcript == expected("""
        rmi_kv console: type 'help' for the commands, 'quit' or Ctrl-D to leave
        error: none of the registered replicas (replica1, replica2) is reachable
        hint: start them with 'python run_server.py --name NAME'
        rmi_kv (not connected)> keys
        error: none of the registered replicas (replica1, replica2) is reachable
        hint: start them with 'python run_server.py --name NAME'
        """)


def test_trace_shows_the_two_phase_commit_round_after_each_write():
    cluster = FakeCluster(names=("replica1", "replica2"))
    transcript = session(cluster, ["trace on", "put k v", "get k", "trace off", "delete k", "trace"])
    assert transcript == expected("""
        rmi_kv console: type 'help' for the commands, 'quit' or Ctrl-D to leave
        connected to replica1 (1.25 ms)
        rmi_kv replica1> trace on
        trace is on: every write shows its two-phase commit round
        rmi_kv replica1> put k v
        OK (1.25 ms)
        two-phase commit replica1:cafe:1:1700000000000000 (coordinator replica1, 1 attempt)
          phase 1: canCommit, then every participant votes
               0.01 ms  canCommit      replica1 → replica2  sent
               0.05 ms  canCommit      replica1 → replica1  local
               1.00 ms  vote           replica1 → replica1  YES after 0.50 ms
               1.01 ms  vote           replica2 → replica1  YES after 0.60 ms
          decision (at the coordinator)
               1.50 ms  decision       replica1             COMMIT forced to the log
          phase 2: doCommit to every participant, each acknowledges (haveCommitted)
               2.00 ms  haveCommitted  replica1 → replica1  acknowledged after 0.30 ms
               2.01 ms  haveCommitted  replica2 → replica1  acknowledged after 0.40 ms
        rmi_kv replica1> get k
        "v" (1.25 ms)
        rmi_kv replica1> trace off
        trace is off
        rmi_kv replica1> delete k
        deleted (1.25 ms)
        rmi_kv replica1> trace
        trace is off
        """)


def test_keys_are_listed_a_page_at_a_time_with_the_command_for_the_next():
    cluster = FakeCluster()
    cluster.data = {key: "v" for key in ["k1", "k2", "k3", "k4", "k5", "x y"]}
    transcript = session(cluster, ["keys k --limit 2", "keys k --after k2 --limit 2", "keys k --limit 2 --after k4",
                                   "keys --after k5", "keys --limit 0", "keys a b", "keys --after"])
    assert transcript == expected("""
        rmi_kv console: type 'help' for the commands, 'quit' or Ctrl-D to leave
        connected to replica1 (1.25 ms)
        rmi_kv replica1> keys k --limit 2
        1) "k1"
        2) "k2"
        2 keys (1.25 ms)
        more after "k2": keys k --after k2 --limit 2
        rmi_kv replica1> keys k --after k2 --limit 2
        1) "k3"
        2) "k4"
        2 keys (1.25 ms)
        more after "k4": keys k --after k4 --limit 2
        rmi_kv replica1> keys k --limit 2 --after k4
        1) "k5"
        1 key (1.25 ms)
        rmi_kv replica1> keys --after k5
        1) "x y"
        1 key (1.25 ms)
        rmi_kv replica1> keys --limit 0
        error: --limit must be a whole number from 1 to 10000, not 0
        hint: for example: keys --limit 50
        rmi_kv replica1> keys a b
        error: usage: keys [PREFIX] [--after KEY] [--limit N]
        hint: for example: keys user: --after user:0099
        rmi_kv replica1> keys --after
        error: --after needs a value
        hint: for example: keys user: --after user:0099
        """)


def test_a_full_last_page_is_not_cut():
    cluster = FakeCluster()
    cluster.data = {"k1": "v", "k2": "v"}
    assert session(cluster, ["keys --limit 2"]).endswith('2) "k2"\n2 keys (1.25 ms)\n')


def test_traced_delete_of_a_missing_key_still_says_not_found():
    cluster = FakeCluster()
    transcript = session(cluster, ["trace on", "delete ghost"])
    assert transcript.endswith("rmi_kv replica1> delete ghost\nkey 'ghost' not found (1.25 ms)\n")
    assert cluster.committed == 0, "nothing was written for a key that did not exist"


def test_ctrl_c_cancels_the_line_or_the_waiting_request():
    cluster = FakeCluster()

    def interrupt_next_request():
        cluster.interrupt_next = True

    def interrupt_and_stop_replica1():
        cluster.interrupt_next = True
        cluster.down.add("replica1")

    transcript = scripted_session(cluster, ["put k v", KeyboardInterrupt, interrupt_next_request, "put k w",
                                            "get k", interrupt_next_request, "use replica2", "get k",
                                            interrupt_and_stop_replica1, "get k", "get k"])
    assert transcript == expected("""
        rmi_kv console: type 'help' for the commands, 'quit' or Ctrl-D to leave
        connected to replica1 (1.25 ms)
        rmi_kv replica1> put k v
        OK (1.25 ms)
        rmi_kv replica1> ^C
        rmi_kv replica1> put k w
        cancelled: the put may have been sent, so it may or may not commit; read the key to find out
        rmi_kv replica1> get k
        "v" (1.25 ms)
        rmi_kv replica1> use replica2
        cancelled
        still using replica1
        rmi_kv replica1> get k
        "v" (1.25 ms)
        rmi_kv replica1> get k
        cancelled
        error: replica replica1 at 127.0.0.1:4000 is unreachable (connection refused)
        hint: is it running? start it with 'python run_server.py --name replica1'
        rmi_kv replica1 (not connected)> get k
        replica1 is unreachable; now using replica2
        "v" (1.25 ms)
        """)
    assert cluster.data == {"k": "v"}
    interrupted = [c for c in cluster.clients if c.replica == "replica1"][0]
    assert interrupted.closed, "the interrupted client's connections are dropped"


def test_no_name_server_then_it_comes_back():
    cluster = FakeCluster()
    cluster.nameserver_up = False

    def name_server_up():
        cluster.nameserver_up = True

    transcript = scripted_session(cluster, ["get k", name_server_up, "put k v"])
    assert transcript == expected("""
        rmi_kv console: type 'help' for the commands, 'quit' or Ctrl-D to leave
        error: no name server at 127.0.0.1:9090 (connection refused)
        hint: start one with 'python run_nameserver.py --host 127.0.0.1 --port 9090'
        rmi_kv (not connected)> get k
        error: no name server at 127.0.0.1:9090 (connection refused)
        hint: start one with 'python run_nameserver.py --host 127.0.0.1 --port 9090'
        rmi_kv (not connected)> put k v
        reconnected to replica1
        OK (1.25 ms)
        """)


def test_unexpected_errors_show_a_traceback_only_with_debug(monkeypatch):
    cluster = FakeCluster()
    monkeypatch.setattr(FakeClient, "keys", lambda self, prefix="", limit=100, after=None: 1 / 0)
    quiet = session(cluster, ["keys", "get k"])
    assert "error: unexpected ZeroDivisionError: division by zero\nhint: run again with --debug" in quiet
    assert "Traceback" not in quiet
    assert quiet.endswith("reconnected to replica1\nkey 'k' not found (1.25 ms)\n"), "the console goes on"
    loud = session(cluster, ["keys"], debug=True)
    assert "Traceback (most recent call last)" in loud and "ZeroDivisionError" in loud


# ------------------------------------------------------- parsing and helpers
@pytest.mark.parametrize("line, words", [
    ('put color "blue sky"', ["put", "color", "blue sky"]),
    ("put k 'it''s'", ["put", "k", "its"]),
    (r'put k "say \"hi\""', ["put", "k", 'say "hi"']),
    (r"put k a\ b", ["put", "k", "a b"]),
    ("put url http://x/#top  # a comment", ["put", "url", "http://x/#top"]),
    ("put k ''", ["put", "k", ""]),
    ("   # only a comment", []),
])
def test_lines_split_as_in_a_shell(line, words):
    assert tokenize(line) == words


def test_txn_writes_are_separated_by_unquoted_commas():
    assert parse_line('txn put a 1, put b "x, y",delete c') == Command(
        "txn", writes={"a": "1", "b": "x, y", "c": None})
    assert argv_words(["put", "a", "1,", "delete", "b", ",", "put", "c", "3"]) == [
        "put", "a", "1", SEPARATOR, "delete", "b", SEPARATOR, "put", "c", "3"]
    # one-shot: an empty argument is an empty value; the whole transaction in one argument reads as in the console
    assert argv_words(["put", "t1", "a b,", "put", "t2", ""]) == ["put", "t1", "a b", SEPARATOR, "put", "t2", ""]
    assert argv_words(['put t3 "x y", put t4 z']) == ["put", "t3", "x y", SEPARATOR, "put", "t4", "z"]
    for bad, message in [("txn", "usage: txn"), ("txn put a 1, put a 2", "appears twice"),
                         ("txn put a", "needs a key and a value"), ('put "a', "unclosed")]:
        with pytest.raises(UsageError, match=message):
            parse_line(bad)


def test_describe_splits_what_happened_from_what_to_do():
    error = ReplicaUnavailable("replica r2 at h:1 is unreachable (refused; reset); start it with 'x'")
    assert describe(error) == ("replica r2 at h:1 is unreachable (refused; reset)", "start it with 'x'")
    aborted = TransactionAborted("aborted", replicas={"r2": "voted NO: keys locked by a concurrent transaction"})
    assert describe(aborted) == ("aborted", "another write held the keys or a replica refused: try again")


def test_digests_match_the_majority():
    statuses = [{"name": n, "reachable": True, "digest": d} for n, d in [("a", "x"), ("b", "x"), ("c", "y")]]
    statuses.append({"name": "d", "reachable": False})
    assert [s["digest_matches"] for s in annotate_digests(statuses)] == [True, True, False, None]
    tie = [{"name": n, "reachable": True, "digest": d} for n, d in [("a", "x"), ("b", "y")]]
    assert [s["digest_matches"] for s in annotate_digests(tie)] == [None, None]


def test_completion_of_commands_replicas_and_arguments():
    names = lambda: ["replica2", "replica1"]  # noqa: E731
    assert completion_choices("", names)[:3] == ["put", "get", "delete"]
    assert completion_choices("us", names) == completion_choices("", names)
    assert completion_choices("use ", names) == ["replica1", "replica2"]
    assert completion_choices("use rep", names) == ["replica1", "replica2"]
    assert completion_choices("trace ", names) == ["on", "off"]
    assert completion_choices("txn put a 1, ", names) == ["put", "delete"]
    assert completion_choices("get k", names) == []


def test_prompt_toolkit_reader_keeps_history_and_completes(tmp_path: Path):
    from prompt_toolkit.document import Document
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    history = tmp_path / "history"
    with create_pipe_input() as pipe:
        reader = PromptReader(lambda: ["replica1", "replica2"], history=history, input=pipe, output=DummyOutput())
        pipe.send_text("put k v\r")
        assert reader.read_line("rmi_kv replica1> ") == "put k v"
        pipe.send_text("\x04")  # Ctrl-D on an empty line
        with pytest.raises(EOFError):
            reader.read_line("rmi_kv replica1> ")
    assert "put k v" in history.read_text()
    completions = reader.session.completer.get_completions(Document("use replica"), None)
    assert [c.text for c in completions] == ["replica1", "replica2"]


# ------------------------------------------------------------- script mode
def script(cluster: FakeCluster, text: str, keep_going: bool = False, as_json: bool = False):
    out, err = io.StringIO(), io.StringIO()
    if as_json:
        output = JsonOutput(out, err)
    else:
        output = PlainOutput(Console(file=out, color_system=None), Console(file=err, color_system=None))
    runner = ScriptSession(cluster.connect, output)
    code, seen = run_script(io.StringIO(text), runner, keep_going=keep_going)
    runner.close()
    return code, seen, out.getvalue(), err.getvalue()


def test_a_script_stops_at_its_first_failure_unless_told_to_keep_going():
    text = "# set up\nput a 1\nget missing\nput b 2\nbogus\nget a\n"
    code, seen, out, err = script(FakeCluster(), text)
    assert (code, seen, out, err) == (1, 2, "OK\n", "line 3: key 'missing' not found\n")
    code, seen, out, err = script(FakeCluster(), text, keep_going=True)
    assert (code, seen, out) == (1, 5, "OK\nOK\n1\n")
    assert err == ("line 3: key 'missing' not found\nline 5: error: unknown command 'bogus'\n"
                   "hint: type 'help' for the list of commands\n")


def test_a_script_can_switch_replica_and_trace_with_json_lines():
    cluster = FakeCluster()
    code, seen, out, err = script(cluster, "use replica2\ntrace on\nput a 1\n", as_json=True)
    assert (code, seen, err) == (0, 3, "")
    import json

    documents = [json.loads(line) for line in out.splitlines()]
    assert documents[0] == {"ok": True, "command": "use", "replica": "replica2"}
    assert documents[1] == {"ok": True, "command": "trace", "trace": True}
    assert documents[2]["trace"]["txid"].startswith("replica2:") and documents[2]["line"] == 3


def test_a_script_stops_at_an_unhealthy_status_with_exit_code_6():
    cluster = FakeCluster()
    code, seen, out, err = script(cluster, "health\nstatus\nmember list\n", as_json=True)
    assert (code, seen, err) == (0, 3, "")
    cluster.down.add("replica3")
    code, seen, out, err = script(cluster, "put a 1\nhealth\nget a\n", as_json=True)
    assert (code, seen) == (3, 1), "the write aborts first"
    code, seen, out, err = script(cluster, "health\nstatus\nmember list\n", as_json=True, keep_going=True)
    assert (code, seen, err) == (6, 3, "")
    import json

    health, status, members = [json.loads(line) for line in out.splitlines()]
    problem = {"member": "replica3", "problem": "unreachable", "detail": "connection refused",
               "hint": "is it running? start it with 'python run_server.py --name replica3'"}
    for document in (health, status):
        assert (document["ok"], document["healthy"], document["in_sync"], document["exit_code"]) == (False, False,
                                                                                                   False, 6)
        assert document["problems"] == [problem]
    assert [m["healthy"] for m in health["members"]] == [True, True, False]
    assert members["ok"] is True and [m["role"] for m in members["members"]] == ["member", "member", "unreachable"]
    code, seen, out, err = script(cluster, "status\nget a\n")
    assert (code, seen, err) == (6, 1, "")
    assert out.splitlines()[-2:] == [
        "replica3 is unreachable (connection refused); is it running? start it with 'python run_server.py --name "
        "replica3'", "unhealthy: 1 of 3 members has a problem: replica3 (unreachable)"]


def test_bench_is_found_as_the_first_command_word():
    assert bench_arguments(["--ns-port", "9", "bench", "--clients", "4"]) == ["--clients", "4"]
    assert bench_arguments(["--replica", "bench", "get", "k"]) is None  # a replica named bench
    assert bench_arguments(["get", "bench"]) is None


def test_bench_gets_everything_after_its_name(monkeypatch):
    import types

    import rmi_kv
    from rmi_kv.cli.main import main

    received = []
    fake = types.SimpleNamespace(main=lambda argv: received.append(argv) or 7)
    monkeypatch.setitem(sys.modules, "rmi_kv.bench", fake)
    monkeypatch.setattr(rmi_kv, "bench", fake, raising=False)
    assert main(["bench", "--clients", "4", "--json"]) == 7
    assert received == [["--clients", "4", "--json"]]
