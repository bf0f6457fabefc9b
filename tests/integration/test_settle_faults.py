"""Settling a lost coordinator's transactions, on real processes (``core.settle``).

A coordinator that fails (at a failpoint, ``kill -9`` under load, together
with a second replica, or paused past its lease) leaves transactions PREPARED
at its participants. The others install an epoch without it and settle them.
After every fault, once the cluster settled: the keys are free (a write on
them succeeds; no replica holds anything in doubt), every member holds the
same outcome (equal digests; the same settled outcomes in every member's
status), no acknowledged write is missing, and no write the client was told
aborted is visible. With the default reply and with ``--early-reply``.
"""
from __future__ import annotations

import itertools
import os
import random
import re
import signal
import threading
from typing import Iterable, Optional

import pytest

from Pyro5.api import Proxy

from rmi_kv.errors import KeyInDoubt, NameServerUnavailable, OutcomeUnknown, ReplicaUnavailable, TransactionAborted
from support.checks import Ledger, recorded, unsettled, wait_until
from support.linearizability import History, check_history

COORDINATOR = "replica5"
SETTLE_TIMEOUT = 20.0


@pytest.fixture(params=[[], ["--early-reply"]], ids=["answered-once-applied", "early-reply"])
def replica_args(request) -> list[str]:
    return request.param


# ------------------------------------------------------------------ helpers
def status_of(cluster, name: str, timeout: float = 2.0) -> dict:
    """``name``'s own status, asked of it alone (a paused replica costs one timeout)."""
    try:
        with cluster.client(name, timeout=timeout) as kv:
            with Proxy(kv.replicas(refresh=True)[name]) as proxy:
                proxy._pyroTimeout = timeout
                return {**proxy.status(), "reachable": True}
    except Exception as error:
        return {"name": name, "reachable": False, "error": f"{type(error).__name__}: {error}"}


def statuses(cluster, names: Optional[Iterable[str]] = None) -> dict[str, dict]:
    """name -> status of each of ``names`` (default: every replica)."""
    return {name: status_of(cluster, name) for name in (names or cluster.names)}


def wait_all_settled(cluster, names: Iterable[str] = None, timeout: float = SETTLE_TIMEOUT) -> dict[str, dict]:
    """Wait until ``names`` (default: every replica) are reachable serving
    members of one epoch, with nothing in doubt or unacknowledged and equal
    digests; their statuses."""
    names = sorted(names or cluster.names)

    def check():
        found = statuses(cluster, names)
        reason = unsettled(list(found.values()), names)
        if reason:
            raise AssertionError(reason)
        epochs = {(s["failover"]["epoch"]["number"], tuple(s["failover"]["epoch"]["members"])) for s in found.values()}
        roles = {s["failover"]["role"] for s in found.values()}
        if len(epochs) != 1 or roles != {"member"} or set(names) - set(next(iter(epochs))[1]):
            raise AssertionError(f"not all members of one epoch: {epochs}, roles {roles}")
        without = sorted(name for name, s in found.items() if not s["failover"]["lease"]["valid"])
        if without:
            raise AssertionError(f"no read lease at {without}")
        return found

    return wait_until(check, timeout, f"{', '.join(names)} settled and equal")


def wait_epoch_without(cluster, gone: Iterable[str], timeout: float = SETTLE_TIMEOUT,
                       quiet: bool = True) -> dict[str, dict]:
    """Wait until every replica but ``gone`` is a serving member of one epoch
    that leaves ``gone`` out, holding no transaction of ``gone`` in doubt
    (``quiet``: no transaction at all, and equal digests: no write is in
    flight); their statuses."""
    gone = set(gone)
    remaining = sorted(set(cluster.names) - gone)

    def check():
        found = statuses(cluster, remaining)
        for name, status in found.items():
            if not status.get("reachable"):
                raise AssertionError(f"{name} unreachable: {status.get('error')}")
            epoch = status["failover"]["epoch"]
            if set(epoch["members"]) != set(remaining) or status["failover"]["role"] != "member":
                raise AssertionError(f"{name} is in epoch {epoch['number']} of {epoch['members']}")
            lost = [txid for txid in status["in_doubt"] if quiet or txid.split(":")[0] in gone]
            if lost:
                raise AssertionError(f"{name} in doubt: {lost}")
        numbers = {status["failover"]["epoch"]["number"] for status in found.values()}
        if len(numbers) != 1:
            raise AssertionError(f"epochs differ: {numbers}")
        if quiet:
            digests = {name: status["digest"] for name, status in found.items()}
            if len(set(digests.values())) != 1:
                raise AssertionError(f"digests differ: {digests}")
        return found

    return wait_until(check, timeout, f"{', '.join(remaining)} in an epoch without {', '.join(sorted(gone))}")


def settled_outcomes(found: dict[str, dict]) -> dict[str, str]:
    """The outcomes the members' epoch settled, the same at every member (asserted)."""
    plans = {name: status["failover"]["epoch"]["settled"] for name, status in found.items()}
    assert len({tuple(sorted(plan.items())) for plan in plans.values()}) == 1, f"settled outcomes differ: {plans}"
    return next(iter(plans.values()))


def read_everywhere(cluster, key: str, names: Optional[Iterable[str]] = None) -> dict[str, Optional[str]]:
    """What ``key`` reads on each replica (a replica that refuses the read for
    now, renewing its lease or waiting for a key in doubt, is asked again)."""
    values = {}
    for name in names or cluster.names:
        with cluster.client(name) as kv:
            values[name] = wait_until(lambda: [kv.get(key)], SETTLE_TIMEOUT, f"{name} reads {key}")[0]
    return values


def log_of(cluster, name: str) -> str:
    return cluster.replicas[name].log_path.read_text("utf-8", "replace")


def settled_in_logs(cluster, names: Iterable[str], txid: str) -> dict[str, set]:
    """name -> the outcomes of ``txid`` it applied as settled by an epoch change (as its log says)."""
    pattern = re.compile(rf"\b{re.escape(txid)} (commit|abort)\b")
    return {name: {match.group(1) for line in log_of(cluster, name).splitlines()
                   if " settled " in line and "of coordinators left out:" in line
                   for match in pattern.finditer(line)}
            for name in names}


# ------------------------------------------- 1. the coordinator failpoints
# (failpoint, a replica killed the moment the coordinator crashed, the outcome the survivors settle)
FAILPOINT_CASES = [
    ("coordinator.after_prepare", None, "abort"),  # every participant voted YES, nothing decided
    ("coordinator.after_decision", None, "abort"),  # COMMIT forced at the coordinator only
    ("coordinator.mid_commit", None, "commit"),  # its doCommit reached one participant (replica1)...
    # ...which is killed too: no survivor holds the COMMIT, and the client was
    # not told of it (two of five held it); replica1 drops it when it rejoins (S5)
    ("coordinator.mid_commit", "replica1", "abort"),
]


def test_coordinator_crash_at_each_failpoint_is_settled(make_cluster, replica_args):
    cluster = make_cluster(5, replica_args=replica_args)
    for number, (failpoint, also_killed, outcome) in enumerate(FAILPOINT_CASES):
        down = [COORDINATOR] + ([also_killed] if also_killed else [])
        survivors = [name for name in cluster.names if name not in down]
        case = f"{failpoint}" + (f" and {also_killed} killed" if also_killed else "")
        key = f"target:{number}"
        with cluster.client("replica2") as kv:
            kv.put(key, "old")
        cluster.restart_replica(COORDINATOR, failpoints=[f"{failpoint}=crash"])
        with cluster.client(COORDINATOR) as kv:
            with pytest.raises(OutcomeUnknown):
                kv.put(key, "new")
        assert cluster.replicas[COORDINATOR].wait_exit(10) is not None, f"{failpoint} did not crash {COORDINATOR}"
        if also_killed:
            cluster.kill_replica(also_killed)

        found = wait_epoch_without(cluster, down)
        settled = settled_outcomes(found)
        assert list(settled.values()) == [outcome], (case, settled)
        (txid,) = settled
        assert txid.startswith(f"{COORDINATOR}:"), txid
        expected = "new" if outcome == "commit" else "old"
        assert read_everywhere(cluster, key, survivors) == dict.fromkeys(survivors, expected), case
        with cluster.client("replica2") as kv:  # the key is free
            kv.put(key, f"after {case}")

        for name in down:  # they rejoin, the coordinator defers to the epoch (S4), both copy the data (S5)
            cluster.start_replica(name)
        found = wait_all_settled(cluster)
        assert txid not in found[COORDINATOR]["unacknowledged_commits"]
        assert read_everywhere(cluster, key) == dict.fromkeys(cluster.names, f"after {case}")
        if failpoint == "coordinator.after_decision":  # its own COMMIT record, overruled by the participants
            assert f"COMMIT record of {txid} overruled" in log_of(cluster, COORDINATOR)


# ------------------------------------- 2 and 3. kill -9 under load
REGISTERS = [f"reg:{index}" for index in range(4)]
NOTHING_HAPPENED = (TransactionAborted, ReplicaUnavailable, KeyInDoubt, NameServerUnavailable)


class Load:
    """Client threads writing and reading through given replicas: register
    operations in a linearizability History, writes of fresh keys in a Ledger."""

    def __init__(self, cluster, replicas: list[str], seed: int) -> None:
        self.cluster = cluster
        self.history = History()
        self.ledger = Ledger()
        self.stop = threading.Event()
        self.problems: list[str] = []
        self.acknowledged: dict[str, int] = dict.fromkeys(replicas, 0)
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(replica, number, seed), daemon=True,
                                         name=f"load-{number}@{replica}")
                        for number, replica in enumerate(replicas)]

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def count(self, replicas: Iterable[str]) -> int:
        with self._lock:
            return sum(self.acknowledged.get(name, 0) for name in replicas)

    def _run(self, replica: str, number: int, seed: int) -> None:
        rng = random.Random(seed * 100 + number)
        client = f"client{number}@{replica}"
        with self.cluster.client(replica, timeout=8.0) as kv:
            for sequence in itertools.count(1):
                if self.stop.is_set():
                    return
                try:
                    if sequence % 2:
                        error = self.ledger.put(kv.put, f"fresh:{number}:{sequence}", f"{client}-{sequence}")
                        if error is None:
                            with self._lock:
                                self.acknowledged[replica] += 1
                        elif not isinstance(error, OutcomeUnknown):
                            self.stop.wait(0.05)
                        continue
                    key, roll = rng.choice(REGISTERS), rng.random()
                    kind = "put" if roll < 0.5 else "delete" if roll < 0.6 else "get"
                    recorded(self.history, kv, key, kind, f"{client}-{sequence}" if kind == "put" else None, client)
                except NOTHING_HAPPENED:
                    self.stop.wait(0.05)
                except Exception as error:  # anything else is a defect
                    self.problems.append(f"{client}: {type(error).__name__}: {error}")
                    return


def final_checks(cluster, load: Load) -> None:
    """Every replica settled and equal, the registers free, every register read
    on every replica (part of the history), the history linearizable, and the
    ledger's keys read on every replica as the clients were told."""
    wait_all_settled(cluster)
    with cluster.client("replica1") as kv:  # the keys are free
        for key in REGISTERS:
            recorded(load.history, kv, key, "put", f"final-{key}", "final-writer")
    found = wait_all_settled(cluster)
    for name in cluster.names:
        with cluster.client(name) as kv:
            for key in REGISTERS:  # (a read refused for now is recorded as nothing, and asked again)
                wait_until(lambda: recorded(load.history, kv, key, "get", None, f"final@{name}") or True,
                           SETTLE_TIMEOUT, f"{name} reads {key}")
    operations = load.history.operations()
    result = check_history(operations)
    assert result.ok, result.explanation

    readers = {name: cluster.client(name) for name in cluster.names}
    try:
        problems = load.ledger.problems(cluster.names, lambda name, key: wait_until(
            lambda: [readers[name].get(key)], SETTLE_TIMEOUT, f"{name} reads {key}")[0])
    finally:
        for reader in readers.values():
            reader.close()
    assert problems == []
    print(f"{len(operations)} register operations; {len(load.ledger.acknowledged)} fresh writes acknowledged, "
          f"{len(load.ledger.not_written)} aborted, {len(load.ledger.unknown)} of unknown outcome; "
          f"epoch {found['replica1']['failover']['epoch']['number']}")


EARLY_REPLY = ["--early-reply"]


@pytest.mark.parametrize("replica_args, victims", [([], [COORDINATOR]), (EARLY_REPLY, [COORDINATOR]),
                                                   ([], [COORDINATOR, "replica4"])],
                         ids=["coordinator", "early-reply-coordinator", "coordinator-and-a-participant"])
def test_kill_9_under_load_is_settled(make_cluster, replica_args, victims):
    """2: the coordinator killed (SIGKILL) mid-load; 3: a second replica killed
    at the same moment (two down: the other three still settle)."""
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    cluster = make_cluster(5, replica_args=replica_args)
    survivors = [name for name in cluster.names if name not in victims]
    through = [COORDINATOR, COORDINATOR, COORDINATOR, "replica1", "replica2", "replica3"]
    with Load(cluster, through, seed) as load:
        wait_until(lambda: load.count([COORDINATOR]) >= 30 or load.problems, 30,
                   f"writes acknowledged through {COORDINATOR}")
        for victim in victims:
            cluster.replicas[victim].signal(signal.SIGKILL)
        for victim in victims:
            cluster.replicas[victim].kill()  # reaped
        killed_at = load.count(survivors)
        found = wait_epoch_without(cluster, victims, quiet=False)
        settled = settled_outcomes(found)
        print(f"epoch {found[survivors[0]]['failover']['epoch']['number']} settled {settled}")
        assert all(txid.split(":")[0] in victims for txid in settled), settled
        # writes go on through the survivors, on every key
        wait_until(lambda: load.count(survivors) >= killed_at + 30 or load.problems, 30,
                   "writes acknowledged through the survivors after the kill")
    assert load.problems == []
    assert not any(thread.is_alive() for thread in load.threads), "a client hung"

    found = wait_epoch_without(cluster, victims)  # quiet now: equal digests, nothing in doubt
    assert settled_outcomes(found) == settled
    for victim in victims:
        cluster.start_replica(victim)
    final_checks(cluster, load)


# --------------------------------------- 4. the coordinator paused past its lease
def test_paused_coordinator_does_not_contradict_the_epoch(make_cluster):
    """The coordinator decided COMMIT (forced and applied at itself only) and is
    paused (SIGSTOP) past its lease; the others change epoch without it.

    Resumed once that epoch is installed: it was settled ABORT (no one else
    held the COMMIT); the client hears OutcomeUnknown and the coordinator
    drops its COMMIT record (S4). Resumed as soon as a voter voted for that
    epoch, before it is installed: its doCommit reaches replicas that voted,
    which refuse it (S2), and perhaps the proposer before it voted (which may
    then hold the COMMIT, or grant the coordinator a lease again and so not
    leave it out after all). Whichever way it goes, every replica ends with
    one outcome, the one any epoch settled, and the client was told of a
    commit only if it happened."""
    cluster = make_cluster(5, log_level="DEBUG")
    # the coordinator waits after forcing its COMMIT, before any doCommit: long
    # enough to be paused there, shorter than the pause
    cluster.restart_replica(COORDINATOR, failpoints=["coordinator.after_decision=delay:700"])
    others = [name for name in cluster.names if name != COORDINATOR]
    paused = cluster.replicas[COORDINATOR]
    try:
        for when in ("after the epoch settled", "while the epoch settles"):
            key = f"paused:{when}"
            with cluster.client("replica1") as kv:
                kv.put(key, "old")
            number = wait_all_settled(cluster)["replica1"]["failover"]["epoch"]["number"]

            answer: list = []

            def write():
                with cluster.client(COORDINATOR, timeout=15.0) as kv:
                    try:
                        kv.put(key, "new")
                        answer.append("acknowledged")
                    except Exception as error:
                        answer.append(error)

            writer = threading.Thread(target=write, name="paused-writer")
            writer.start()
            (txid,) = wait_until(lambda: status_of(cluster, COORDINATOR)["unacknowledged_commits"], 10,
                                 f"{COORDINATOR} decided COMMIT", interval=0.005)
            paused.signal(signal.SIGSTOP)
            try:
                if when == "while the epoch settles":
                    def voted():
                        failover = status_of(cluster, "replica2")["failover"]
                        assert failover["epoch"]["number"] == number, f"epoch {failover['epoch']} installed already"
                        return failover["fenced"]

                    wait_until(voted, SETTLE_TIMEOUT, f"replica2 voted for an epoch without {COORDINATOR}",
                               interval=0.005)
                else:
                    assert settled_outcomes(wait_epoch_without(cluster, [COORDINATOR])) == {txid: "abort"}
            finally:
                paused.signal(signal.SIGCONT)

            writer.join(timeout=30)
            assert not writer.is_alive(), "the write through the paused coordinator hung"
            assert len(answer) == 1, answer
            found = wait_all_settled(cluster)  # the coordinator rejoined: every replica equal
            assert txid not in found[COORDINATOR]["unacknowledged_commits"]
            values = read_everywhere(cluster, key)
            assert len(set(values.values())) == 1, values
            committed = values[COORDINATOR] == "new"
            # the epochs that left the coordinator out (their statuses are gone:
            # the one it rejoined in came after) applied one outcome, as their logs say
            applied = settled_in_logs(cluster, others, txid)
            outcomes = set().union(*applied.values())
            log = log_of(cluster, COORDINATOR)
            refused = [line for line in log.splitlines() if txid in line and "does not apply" in line]
            print(f"{when}: settled {applied or 'by no epoch'}; reads {values[COORDINATOR]!r}; "
                  f"the client heard {answer[0]!r}; doCommit refused by voters:", *refused, sep="\n  ")
            assert outcomes <= {"commit" if committed else "abort"}, (applied, values)
            if answer[0] == "acknowledged":
                assert committed, f"acknowledged, yet the write of {txid} is nowhere: {values}"
            else:
                assert isinstance(answer[0], OutcomeUnknown), answer
            if when == "after the epoch settled":
                assert outcomes == {"abort"} and not committed
                assert f"COMMIT record of {txid} overruled" in log
            else:  # the voters' gate (S2) was put to the test
                assert refused, f"the coordinator resumed too late: no voter refused its doCommit of {txid}"
            for name in others:
                assert f"settled ABORT {txid}, which this replica committed" not in log_of(cluster, name)
            with cluster.client(COORDINATOR) as kv:  # the key is free, through the old coordinator too
                kv.put(key, f"after resuming {when}")
            wait_all_settled(cluster)
            assert read_everywhere(cluster, key) == dict.fromkeys(cluster.names, f"after resuming {when}")
    finally:
        paused.signal(signal.SIGCONT)


# ------------------------- a participant rejoining while a commit is in progress
def copied_from(cluster, name: str) -> Optional[str]:
    """Whom ``name`` last copied its data from (as its log says)."""
    found = re.findall(r"caught up from (\S+):", log_of(cluster, name))
    return found[-1] if found else None


def test_participant_rejoining_while_a_commit_is_in_progress_gets_it(make_cluster):
    """replica4 crashes as the doCommit of a transaction it holds PREPARED
    arrives; the other participants are slow to apply theirs. An epoch
    without replica4 settles nothing (the coordinator is in it). replica4
    restarts, learns COMMIT from the coordinator and applies it, then rejoins
    as a newcomer: it empties its data and copies it from a member where the
    transaction is still PREPARED. It must come back holding the transaction
    (PREPARED, to apply its commit) or its write."""
    slow = "participant.before_commit=once:delay:5000"  # the first commit each replica applies
    cluster = make_cluster(5, env={**os.environ, "RMI_KV_FAILPOINTS": slow})
    cluster.stop_replica(COORDINATOR)
    cluster.start_replica(COORDINATOR, extra_env={"RMI_KV_FAILPOINTS": ""})  # it applies its own at once
    cluster.restart_replica("replica4", failpoints=["participant.before_commit=crash"])
    with cluster.client(COORDINATOR) as kv:
        with pytest.raises(OutcomeUnknown):  # only the coordinator holds it in time
            kv.put("in-progress", "new")
    assert cluster.replicas["replica4"].wait_exit(10) is not None
    wait_epoch_without(cluster, ["replica4"], quiet=False)
    (txid,) = status_of(cluster, "replica1")["in_doubt"]  # the commit is still in progress
    cluster.start_replica("replica4", extra_env={"RMI_KV_FAILPOINTS": ""})
    # a member copies out its data only once no transaction of an earlier epoch is in progress there;
    # whichever member replica4 copied from, it ends up with the write (before that fix, three of the
    # four possible sources handed out a copy without it, and nothing ever brought it)
    print(f"replica4 copied from {copied_from(cluster, 'replica4')}; {txid} was in progress")
    wait_all_settled(cluster)
    assert read_everywhere(cluster, "in-progress") == dict.fromkeys(cluster.names, "new")

