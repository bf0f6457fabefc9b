"""Failover on real processes: replicas killed, paused past their lease, cut off
by a fault proxy, a proposer killed with the votes in, three of five down, and
a rolling restart, each under a mixed workload.

Clients pinned to every replica (the ones about to fail too) put, get and
delete a few keys; every operation goes into a ``History`` that the
linearizability checker must accept: a stale read anywhere fails the test.
Writes through the survivors must succeed again within a generous bound (the
measured time is printed: ``pytest -s``); afterwards every replica is a
serving member again, holds every acknowledged write, and all digests agree.

With a lease of 1 s, writes go on again after one to four seconds; the bounds
below are several times that, never a tight timing assertion.
"""
from __future__ import annotations

import itertools
import random
import signal
import threading
import time
from dataclasses import dataclass
from typing import Iterable, Optional

import pytest
from Pyro5.api import Proxy

from rmi_kv.errors import KeyInDoubt, NameServerUnavailable, OutcomeUnknown, ReplicaUnavailable, TransactionAborted
from rmi_kv.server.cluster import LocalCluster
from rmi_kv.wire.client import KeyValueClient
from rmi_kv.wire.naming import object_name
from support.checks import Ledger, unsettled, wait_until
from support.launchers import ProxiedCluster
from support.linearizability import History, check_history

LEASE = 1.0
#: a read of a key whose write is in doubt (its coordinator was killed midway) says so
#: after a second: the client moves on to another key before its own timeout
REPLICA_ARGS = ["--lease", f"{LEASE:g}", "--vote-timeout", "1", "--read-wait", "1"]
NAMES = [f"replica{index}" for index in range(1, 6)]
KEYS = [f"fo:{index}" for index in range(4)]
#: writes go on without the replicas lost within this (measured: 1 to 3.5 s)
FAILOVER_BOUND = 10.0
#: how long a client waits for an answer (a paused replica costs its clients this much)
CLIENT_TIMEOUT = 4.0
#: failures that mean "nothing happened" to a client; anything else is a defect
REFUSED = (TransactionAborted, ReplicaUnavailable, KeyInDoubt, NameServerUnavailable)


# ------------------------------------------------------------------ clusters
def start_cluster(cluster: LocalCluster, failpoints: dict) -> LocalCluster:
    """``cluster.start()``, with failpoints for some replicas only."""
    try:
        cluster.start_ns()
        starting = [cluster.spawn_replica(name, failpoints.get(name, ())) for name in cluster.names]
        for child in starting:
            child.wait_ready()
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture
def clusters(tmp_path, request):
    """Make five-replica clusters (``proxied=True``: replica5 behind a fault proxy);
    every process is stopped afterwards, and the logs printed when the test failed."""
    made: list[LocalCluster] = []

    def make(*, proxied: bool = False, failpoints: Optional[dict] = None) -> LocalCluster:
        kind = ProxiedCluster if proxied else LocalCluster
        cluster = kind(len(NAMES), data_dir=tmp_path / f"cluster{len(made)}", replica_args=REPLICA_ARGS)
        made.append(cluster)
        return start_cluster(cluster, failpoints or {})

    yield make
    report = getattr(request.node, "rep_call", None)
    for cluster in made:
        if report is not None and report.failed:
            print(cluster.logs())
        cluster.stop()


def pinned_client(cluster: LocalCluster, name: str) -> KeyValueClient:
    """A client of replica ``name`` alone (beside the cut, for the one behind the fault proxy)."""
    if isinstance(cluster, ProxiedCluster) and name == cluster.proxied:
        return ClientBesideTheCut(cluster, timeout=CLIENT_TIMEOUT)
    return cluster.client(name, timeout=CLIENT_TIMEOUT)


class ClientBesideTheCut(KeyValueClient):
    """A client on the cut-off replica's side of the cut: it dials the replica's
    own port, not the fault proxy the others reach it through."""

    def __init__(self, cluster: ProxiedCluster, timeout: float) -> None:
        super().__init__(cluster.ns_host, cluster.ns_port, replica=cluster.proxied, timeout=timeout)
        self.direct = direct_uri(cluster)

    def replicas(self, *, refresh: bool = False) -> dict[str, str]:
        members = super().replicas(refresh=refresh)
        with self._uris_lock:
            self._uris[self.replica] = self.direct
        members[self.replica] = self.direct
        return members


def direct_uri(cluster: ProxiedCluster) -> str:
    return f"PYRO:{object_name(cluster.proxied)}@127.0.0.1:{cluster.target_port}"


# ------------------------------------------------------------------ the workload
#: a delete that found nothing to delete wrote nothing: it is a read (served under the lease)
DELETE_NOTHING = "delete (nothing there)"
WRITES, READS = ("put", "delete"), ("get", DELETE_NOTHING)


@dataclass(frozen=True)
class Done:
    """An operation a client saw succeed, or saw refused (``kind``: put, delete, get
    or ``DELETE_NOTHING``)."""

    replica: str
    kind: str
    invoked: float


class Workload:
    """One client pinned to each replica, putting, getting and deleting ``KEYS``
    at random, every operation recorded into ``history``."""

    def __init__(self, cluster: LocalCluster, history: History, seed: int) -> None:
        self.cluster = cluster
        self.history = history
        self.seed = seed
        self.stopping = threading.Event()
        self.problems: list[str] = []
        self.done: list[Done] = []
        self.refused: list[Done] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(name, number), name=f"workload-{name}")
                         for number, name in enumerate(NAMES)]

    def start(self) -> "Workload":
        for thread in self._threads:
            thread.start()
        return self

    def _run(self, name: str, number: int) -> None:
        rng = random.Random(self.seed * 100 + number)
        with pinned_client(self.cluster, name) as kv:
            for sequence in itertools.count(1):
                if self.stopping.is_set():
                    return
                key = rng.choice(KEYS)
                roll = rng.random()
                kind = "put" if roll < 0.45 else "delete" if roll < 0.55 else "get"
                value = f"c{number}-{sequence}" if kind == "put" else None
                invoked = time.monotonic()
                outcome, result = attempt(self.history, kv, key, kind, value, client=f"client{number}@{name}")
                if outcome == "ok":
                    with self._lock:
                        self.done.append(Done(name, DELETE_NOTHING if kind == "delete" and not result else kind,
                                              invoked))
                elif outcome == "refused":
                    with self._lock:
                        self.refused.append(Done(name, kind, invoked))
                    self.stopping.wait(0.05)
                elif outcome != "unknown":
                    self.problems.append(f"client{number}@{name}: {outcome}")
                    return

    def succeeded(self, replicas: Iterable[str], kinds: Iterable[str], invoked_after: float = float("-inf"),
                  invoked_before: float = float("inf")) -> list[Done]:
        """The operations of ``kinds`` through ``replicas`` invoked in that window that succeeded."""
        replicas, kinds = set(replicas), set(kinds)
        with self._lock:
            return [done for done in self.done if done.replica in replicas and done.kind in kinds
                    and invoked_after <= done.invoked <= invoked_before]

    def refusals(self, replica: str, kind: str, invoked_after: float) -> int:
        """How many operations of ``kind`` through ``replica``, invoked after that, were refused."""
        with self._lock:
            return sum(1 for done in self.refused
                       if done.replica == replica and done.kind == kind and done.invoked >= invoked_after)

    def served_everywhere(self, names: Iterable[str], since: float = float("-inf")) -> bool:
        """Every one of ``names`` acknowledged a write and served a read invoked after ``since``
        (an AssertionError naming what is missing, for wait_until's report)."""
        missing = [f"{what} through {name}" for name in names
                   for what, kinds in (("no write", WRITES), ("no read", READS))
                   if not self.succeeded([name], kinds, since)]
        assert not missing, ", ".join(missing)
        return True

    def stop(self) -> None:
        self.halt()
        assert not any(thread.is_alive() for thread in self._threads), "a workload client hung"

    def halt(self) -> None:
        """Stop the clients (each finishes the operation it is in)."""
        self.stopping.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=3 * CLIENT_TIMEOUT)


def attempt(history: History, kv: KeyValueClient, key: str, kind: str, value: Optional[str],
            client: str) -> tuple[str, object]:
    """Run one operation, recorded into ``history``: ("ok", what a get read or
    whether a delete found something), ("unknown", None) for a write without an
    answer, ("refused", the error) when nothing happened, or (a description,
    the error) for anything else."""
    token = history.invoke(key, kind, value, client=client)
    try:
        if kind == "put":
            kv.put(key, value)
            result = None
        elif kind == "delete":
            result = kv.delete(key)
        else:
            result = kv.get(key)
    except OutcomeUnknown:
        history.unknown(token)
        return "unknown", None
    except REFUSED as error:
        history.fail(token)
        return "refused", error
    except Exception as error:  # a defect: recorded as failed, reported by the caller
        history.fail(token)
        return f"{kind} {key}: {type(error).__name__}: {error}", error
    history.complete(token, result if kind == "get" else None)
    return "ok", result


# ------------------------------------------------------------------ looking at replicas
class Run:
    """One scenario: the cluster, the workload, a ledger of probe writes, and
    ways to look at each replica on its own."""

    def __init__(self, cluster: LocalCluster, seed: Optional[int] = None) -> None:
        self.cluster = cluster
        self.seed = random.randrange(1 << 30) if seed is None else seed
        print(f"workload seed {self.seed}")
        self.history = History()
        self.workload = Workload(cluster, self.history, self.seed)
        self.ledger = Ledger()
        self._probes = itertools.count(1)
        self._lookup = cluster.client(timeout=2.0)
        self._clients: dict[str, KeyValueClient] = {}
        self.direct = {cluster.proxied: direct_uri(cluster)} if isinstance(cluster, ProxiedCluster) else {}
        #: the epoch the replicas ended in (set once they converged)
        self.epoch: Optional[int] = None

    def client(self, name: str) -> KeyValueClient:
        if name not in self._clients:
            self._clients[name] = pinned_client(self.cluster, name)
        return self._clients[name]

    def close(self) -> None:
        for client in [self._lookup, *self._clients.values()]:
            client.close()

    def status(self, name: str, timeout: float = 1.0) -> dict:
        """``name``'s own status, asked of it alone (a paused or cut-off replica costs ``timeout``)."""
        uri = self.direct.get(name) or self._lookup.replicas(refresh=True)[name]
        proxy = Proxy(uri)
        proxy._pyroTimeout = timeout
        try:
            return proxy.status()
        finally:
            proxy._pyroRelease()

    def epoch_without(self, left_out: Iterable[str], of: Iterable[str]) -> dict:
        """The epoch every replica of ``of`` installed, once it is one and leaves ``left_out`` out
        (an AssertionError saying why not, for wait_until's report)."""
        left_out = set(left_out)
        epochs = {name: self.status(name)["failover"]["epoch"] for name in of}
        numbers = {epoch["number"] for epoch in epochs.values()}
        first = next(iter(epochs.values()))
        assert len(numbers) == 1 and first["number"] > 0 and not left_out & set(first["members"]), epochs
        return first

    def probe_key(self) -> str:
        """A key no other write uses (for the ledger)."""
        return f"probe:{next(self._probes)}"

    def first_write(self, through: Iterable[str], since: float, timeout: float = FAILOVER_BOUND) -> float:
        """Write fresh keys through ``through`` in turn until one is acknowledged;
        seconds from ``since`` to that acknowledgement."""
        coordinators = itertools.cycle(list(through))

        def acknowledged() -> Optional[float]:
            name = next(coordinators)
            key = self.probe_key()
            if self.ledger.put(self.client(name).put, key, f"value-of-{key}") is None:
                return time.monotonic() - since
            return None

        return wait_until(acknowledged, timeout, f"a write through {', '.join(sorted(set(through)))} commits")

    def serving_member(self, name: str) -> bool:
        """``name`` is a member of the epoch every replica installed, with complete data and a valid lease."""
        statuses = {other: self.status(other) for other in NAMES}
        epochs = {other: status["failover"]["epoch"]["number"] for other, status in statuses.items()}
        mine = statuses[name]
        failover = mine["failover"]
        assert len(set(epochs.values())) == 1, f"epochs differ: {epochs}"
        assert failover["role"] == "member" and name in failover["epoch"]["members"], failover
        assert failover["lease"]["valid"] and mine["serving"] and not mine["catching_up"], (failover, mine["refusal"])
        return True

    def converged(self) -> bool:
        """Every replica is a serving member of one epoch of all five, with a valid
        lease, nothing in doubt or unacknowledged, and the same digest."""
        with self.cluster.client(timeout=2.0) as kv:
            statuses = kv.status()
        reason = unsettled(statuses, NAMES)
        assert reason is None, reason
        roles = {status["name"]: (status["failover"]["epoch"]["number"], status["failover"]["epoch"]["members"],
                                  status["failover"]["role"], status["failover"]["lease"]["valid"])
                 for status in statuses}
        assert len({(number, tuple(members)) for number, members, _, _ in roles.values()}) == 1, roles
        assert all(members == NAMES and role == "member" and valid for _, members, role, valid in roles.values()), roles
        self.epoch = statuses[0]["failover"]["epoch"]["number"]
        return True

    def read(self, name: str, key: str) -> Optional[str]:
        """``key`` read through ``name`` (asked again while a lease renewal is late)."""
        def value() -> tuple:
            try:
                return (self.client(name).get(key),)
            except ReplicaUnavailable:
                return ()

        return wait_until(value, 5.0, f"{key} reads through {name}")[0]

    def finish(self) -> None:
        """Stop the load; once every replica is a serving member again, read every key through
        every replica (part of the history), check the probes, the digests and linearizability."""
        self.workload.stop()
        assert self.workload.problems == []
        wait_until(self.converged, 30.0, "every replica a serving member with equal data", interval=0.2)
        for name in NAMES:
            def read_everything(name: str = name) -> bool:
                kv = self.client(name)
                return all(attempt(self.history, kv, key, "get", None, client=f"final@{name}")[0] == "ok"
                           for key in KEYS)

            wait_until(read_everything, 10.0, f"every key reads through {name}")
        problems = self.ledger.problems(NAMES, self.read)
        assert problems == []
        wait_until(self.converged, 10.0, "equal digests after the final reads")
        operations = self.history.operations()
        writes = sum(1 for op in operations if op.kind != "get" and op.completed is not None)
        reads = sum(1 for op in operations if op.kind == "get" and op.completed is not None)
        print(f"{len(operations)} operations: {writes} acknowledged writes, {reads} reads; "
              f"{len(self.ledger.acknowledged)} probe writes acknowledged; ended in epoch {self.epoch}")
        assert writes >= 20 and reads >= 20, "too little load got through to test anything"
        result = check_history(operations)
        assert result.ok, f"workload seed {self.seed}: {result.explanation}"


@pytest.fixture
def runs():
    made: list[Run] = []

    def make(cluster: LocalCluster) -> Run:
        run = Run(cluster)
        made.append(run)
        return run

    yield make
    for run in made:
        run.workload.halt()
        run.close()


def report(record_property, name: str, seconds: float, what: str) -> None:
    print(f"{what}: {seconds:.2f} s")
    record_property(name, round(seconds, 3))


# ------------------------------------------------------------------ scenarios
def test_two_killed_the_other_three_write_on(clusters, runs, record_property):
    cluster = clusters()
    run = runs(cluster)
    run.workload.start()
    wait_until(lambda: run.workload.served_everywhere(NAMES), 10.0, "load through every replica")

    killed = ["replica4", "replica5"]
    survivors = [name for name in NAMES if name not in killed]
    for name in killed:
        cluster.kill_replica(name)
    killed_at = time.monotonic()
    seconds = run.first_write(survivors, killed_at)
    report(record_property, "kill_to_first_write_s", seconds, "two replicas killed: first acknowledged write after")
    assert seconds < FAILOVER_BOUND
    epoch = wait_until(lambda: run.epoch_without(killed, survivors), 5.0, "the survivors in an epoch of their own")
    assert epoch["members"] == survivors
    wait_until(lambda: run.workload.served_everywhere(survivors, killed_at), FAILOVER_BOUND,
               "the load goes on through the survivors")

    back = time.monotonic()
    for name in killed:
        cluster.start_replica(name)
    for name in killed:
        wait_until(lambda name=name: run.serving_member(name), 20.0, f"{name} a serving member again")
    report(record_property, "rejoin_s", time.monotonic() - back, "both back as serving members after")
    wait_until(lambda: run.workload.served_everywhere(killed, back), 10.0, "the load through the returned ones")
    run.finish()


def test_paused_past_its_lease_no_stale_read_then_it_rejoins(clusters, runs, record_property):
    cluster = clusters()
    run = runs(cluster)
    run.workload.start()
    wait_until(lambda: run.workload.served_everywhere(NAMES), 10.0, "load through every replica")

    # the proposer itself pauses: the next one by name takes over
    paused, others = "replica1", NAMES[1:]
    key = "paused:probe"
    reader = run.client(paused)
    wait_until(lambda: attempt(run.history, reader, key, "put", "stale", client="probe@replica1")[0] == "ok",
               5.0, "the value the paused replica will hold")
    assert attempt(run.history, reader, key, "get", None, client="probe@replica1") == ("ok", "stale")

    cluster.replicas[paused].signal(signal.SIGSTOP)
    paused_at = time.monotonic()
    try:
        epoch = wait_until(lambda: run.epoch_without([paused], others), FAILOVER_BOUND,
                           "the others in an epoch without the paused replica")
        report(record_property, "pause_to_epoch_s", time.monotonic() - paused_at,
               "replica1 paused: the others installed an epoch without it after")
        assert epoch["members"] == others
        writer = run.client("replica2")
        written: list[str] = []

        def overwritten() -> bool:
            written.append(f"current-{len(written) + 1}")
            return attempt(run.history, writer, key, "put", written[-1], client="probe@replica2")[0] == "ok"

        wait_until(overwritten, FAILOVER_BOUND, "a write through replica2 while replica1 is paused")
        report(record_property, "pause_to_first_write_s", time.monotonic() - paused_at,
               "replica1 paused: first acknowledged write after")
    finally:
        cluster.replicas[paused].signal(signal.SIGCONT)
    outcome, result = attempt(run.history, reader, key, "get", None, client="resumed@replica1")
    print(f"read through replica1 the moment it resumed: {outcome} {result}")
    if outcome == "ok":
        assert result != "stale" and result in written, f"stale read through the resumed replica: {result!r}"
    else:
        assert outcome == "refused" and isinstance(result, ReplicaUnavailable), (outcome, result)

    resumed = time.monotonic()
    wait_until(lambda: run.serving_member(paused), 20.0, "replica1 a serving member again")
    report(record_property, "resume_to_member_s", time.monotonic() - resumed, "replica1 rejoined by itself after")
    wait_until(lambda: run.workload.served_everywhere([paused], resumed), 10.0, "the load through replica1 again")
    run.finish()


def test_cut_off_by_the_network_its_clients_read_nothing_stale(clusters, runs, record_property):
    cluster = clusters(proxied=True)
    run = runs(cluster)
    cut, others = cluster.proxied, [name for name in NAMES if name != cluster.proxied]
    run.workload.start()
    wait_until(lambda: run.workload.served_everywhere(NAMES), 10.0, "load through every replica")

    # nobody reaches replica5 any more; it still reaches the others, and its own clients reach it
    cluster.proxy.blackhole()
    cut_at = time.monotonic()
    try:
        seconds = run.first_write(others, cut_at)
        report(record_property, "cut_to_first_write_s", seconds, "replica5 cut off: first acknowledged write after")
        assert seconds < FAILOVER_BOUND
        epoch = wait_until(lambda: run.epoch_without([cut], others), 5.0, "the others in an epoch without replica5")
        assert epoch["members"] == others
        wait_until(lambda: run.workload.served_everywhere(others, cut_at), FAILOVER_BOUND,
                   "the load goes on through the others")
        # replica5 hears of the new epoch in the answers it still gets, and serves no reads
        wait_until(lambda: run.status(cut)["failover"]["role"] == "outside the epoch", FAILOVER_BOUND,
                   "replica5 knows it is outside the epoch")
        refused_at = time.monotonic()
        outcome, error = attempt(run.history, run.client(cut), "cut:probe", "get", None, client="probe@replica5")
        assert outcome == "refused" and "not a member" in str(error), (outcome, error)
        wait_until(lambda: run.workload.refusals(cut, "get", refused_at) >= 3
                   and len(run.workload.succeeded(others, READS, refused_at)) >= 3, FAILOVER_BOUND,
                   "replica5's clients go on asking, and reads through the others go on")
    finally:
        cluster.proxy.passthrough()
    healed = time.monotonic()
    served = run.workload.succeeded([cut], WRITES + READS, refused_at, healed)
    assert served == [], f"replica5 served its clients while outside the epoch: {served}"
    wait_until(lambda: run.serving_member(cut), 20.0, "replica5 a serving member again")
    report(record_property, "heal_to_member_s", time.monotonic() - healed, "replica5 rejoined by itself after")
    wait_until(lambda: run.workload.served_everywhere([cut], healed), 10.0, "the load through replica5 again")
    run.finish()


def test_proposer_killed_with_the_votes_in_the_others_finish_the_change(clusters, runs, record_property):
    # replica1 proposes every change (the first by name of the members it hears) and dies
    # once the votes for its first one are in, before anyone installed it
    cluster = clusters(failpoints={"replica1": ["failover.after_votes=once:crash"]})
    run = runs(cluster)
    run.workload.start()
    wait_until(lambda: run.workload.served_everywhere(NAMES), 10.0, "load through every replica")

    cluster.kill_replica("replica5")
    killed_at = time.monotonic()
    proposer = cluster.replicas["replica1"]
    wait_until(lambda: not proposer.alive(), FAILOVER_BOUND, "replica1 dies with the votes in")
    assert "failpoint failover.after_votes fires: crash" in proposer.log_path.read_text("utf-8", "replace")
    survivors = ["replica2", "replica3", "replica4"]
    seconds = run.first_write(survivors, killed_at)
    report(record_property, "kill_to_first_write_s", seconds,
           "replica5 killed, the proposer dead with the votes in: first acknowledged write after")
    assert seconds < FAILOVER_BOUND
    epoch = wait_until(lambda: run.epoch_without(["replica1", "replica5"], survivors), 5.0,
                       "the others in an epoch without the dead proposer")
    assert epoch["members"] == survivors and epoch["number"] >= 2, epoch  # above the number voted for
    wait_until(lambda: run.workload.served_everywhere(survivors, killed_at), FAILOVER_BOUND,
               "the load goes on through the survivors")

    back = time.monotonic()
    for name in ("replica1", "replica5"):
        cluster.start_replica(name)
    for name in ("replica1", "replica5"):
        wait_until(lambda name=name: run.serving_member(name), 20.0, f"{name} a serving member again")
    wait_until(lambda: run.workload.served_everywhere(["replica1", "replica5"], back), 10.0,
               "the load through the returned ones")
    run.finish()


def test_three_down_writes_stop_reads_stop_and_both_resume_by_themselves(clusters, runs, record_property):
    cluster = clusters()
    run = runs(cluster)
    run.workload.start()
    wait_until(lambda: run.workload.served_everywhere(NAMES), 10.0, "load through every replica")

    down, left = ["replica3", "replica4", "replica5"], ["replica1", "replica2"]
    for name in down:
        cluster.kill_replica(name)
    killed_at = time.monotonic()
    errors: list[Exception] = []

    def refused_for_want_of_a_majority() -> bool:
        key = run.probe_key()
        error = run.ledger.put(run.client(left[len(errors) % 2]).put, key, f"value-of-{key}")
        errors.append(error)
        return isinstance(error, ReplicaUnavailable) and "no majority" in str(error)

    wait_until(refused_for_want_of_a_majority, FAILOVER_BOUND, "writes refused: no majority")
    print(f"a write with three of five down: {type(errors[-1]).__name__}: {errors[-1]}")
    assert all(isinstance(error, (ReplicaUnavailable, TransactionAborted)) for error in errors), errors
    assert "writes wait until 3 do" in str(errors[-1])

    def no_lease(name: str) -> bool:  # a key nobody writes: no transaction in doubt holds it
        outcome, error = attempt(run.history, run.client(name), "lease:probe", "get", None, client=f"probe@{name}")
        assert outcome in ("ok", "refused"), (outcome, error)
        return outcome == "refused" and isinstance(error, ReplicaUnavailable) and "no read lease" in str(error)

    reads_stopped = {}
    for name in left:
        wait_until(lambda name=name: no_lease(name), 5.0, f"reads through {name} refused once its lease ran out")
        reads_stopped[name] = time.monotonic()
    report(record_property, "kill_to_reads_refused_s", max(reads_stopped.values()) - killed_at,
           "three of five down: reads refused after")
    stalled = run.status("replica1")["failover"]["stalled"]
    assert stalled and "no majority" in stalled, stalled

    back = time.monotonic()
    acknowledged = run.workload.succeeded(NAMES, WRITES, killed_at, back)
    assert not acknowledged, f"writes acknowledged with three of five down: {acknowledged}"
    assert not run.ledger.acknowledged, f"probe writes acknowledged with three of five down: {run.ledger.acknowledged}"
    for name in left:
        late = run.workload.succeeded([name], READS, reads_stopped[name], back)
        assert not late, f"reads through {name} served without a lease: {late}"

    starting = [cluster.spawn_replica(name) for name in down]
    for child in starting:
        child.wait_ready()
    seconds = run.first_write(left, back, timeout=15.0)
    report(record_property, "restart_to_first_write_s", seconds, "three brought back: first acknowledged write after")
    for name in down:
        wait_until(lambda name=name: run.serving_member(name), 20.0, f"{name} a serving member again")
    wait_until(lambda: run.workload.served_everywhere(NAMES, back), 10.0, "the load through every replica again")
    run.finish()


def test_rolling_restart_of_all_five_under_load(clusters, runs, record_property):
    cluster = clusters()
    run = runs(cluster)
    run.workload.start()
    wait_until(lambda: run.workload.served_everywhere(NAMES), 10.0, "load through every replica")

    for name in NAMES:
        stopped = time.monotonic()
        cluster.stop_replica(name)
        cluster.start_replica(name)
        wait_until(lambda: run.serving_member(name), 20.0, f"{name} a serving member again")
        report(record_property, f"restart_{name}_s", time.monotonic() - stopped,
               f"{name} stopped, restarted and a serving member again after")
        wait_until(lambda: run.workload.served_everywhere([name], stopped), 10.0, f"the load through {name} again")
    run.finish()
