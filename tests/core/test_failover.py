"""Failover of five replicas wired together with plain functions and a fake clock."""
from __future__ import annotations

from typing import Any, Iterable

import pytest

from rmi_kv.core.epochs import CLOCK_RATE, MARGIN
from rmi_kv.core.failover import GRANT_LEASE, INSTALL_EPOCH, LEAVE_EPOCH, SETTLE_QUERY, VOTE_EPOCH, Failover
from rmi_kv.core.messages import ABORT, COMMIT
from rmi_kv.core.settle import NOTHING, PREPARED
from tests.support.memory_storage import MemoryStorage

NAMES = [f"r{i}" for i in range(1, 6)]
LEASE = 1.0
TICK = LEASE / 4


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Held:
    """A replica's transactions in plain dicts: txid -> commit | abort | prepared, with its coordinator."""

    def __init__(self) -> None:
        self.states: dict[str, str] = {}
        self.coordinators: dict[str, str] = {}

    def doubtful(self, members):
        return sorted(txid for txid, state in self.states.items()
                      if state == PREPARED and self.coordinators[txid] not in set(members))

    def settle_state(self, txids):
        return {txid: self.states.get(txid, NOTHING) for txid in txids}

    def apply_settled(self, outcomes):
        for txid, outcome in outcomes.items():
            if self.states.get(txid) == PREPARED:
                self.states[txid] = outcome


class Group:
    """Five replicas; ``down`` ones answer nothing and do nothing; a call from
    ``caller`` to ``callee`` gets no answer while ``(caller, callee)`` is ``cut``."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.stores = {name: MemoryStorage() for name in NAMES}
        self.complete = {name: True for name in NAMES}
        self.resets: list[str] = []
        self.down: set[str] = set()
        self.held = {name: Held() for name in NAMES}

        self.cut: set[tuple[str, str]] = set()
        self.replicas = {name: self._make(name) for name in NAMES}

    def _make(self, name: str) -> Failover:
        def reset() -> None:
            self.resets.append(name)
            self.complete[name] = False

        return Failover(name, store=self.stores[name], configured=lambda: NAMES,
                        complete=lambda: self.complete[name], lease=LEASE, clock=self.clock, reset_data=reset,
                        settling=self.held[name])

    def restart(self, name: str) -> None:
        self.replicas[name] = self._make(name)
        self.down.discard(name)

    def call_from(self, caller: str):
        def call(names: Iterable[str], method: str, *args: Any, timeout: float) -> dict:
            answers = {}
            for name in names:
                if name in self.down or caller in self.down or (caller, name) in self.cut:
                    answers[name] = (None, ConnectionError(f"{name} is down"))
                    continue
                replica = self.replicas[name]
                handler = {GRANT_LEASE: replica.grant, VOTE_EPOCH: replica.vote, INSTALL_EPOCH: replica.install,
                           SETTLE_QUERY: self.held[name].settle_state, LEAVE_EPOCH: replica.left}[method]
                answers[name] = (handler(*args), None)
            return answers

        return call

    def run(self, seconds: float) -> None:
        """Tick every replica that is up, every TICK seconds of fake time."""
        end = self.clock.now + seconds
        while self.clock.now < end:
            for name in NAMES:
                if name not in self.down:
                    self.replicas[name].tick(self.call_from(name))
            self.clock.now += TICK

    def epochs(self, names: Iterable[str] = NAMES) -> set[int]:
        return {self.replicas[name].epoch.number for name in names}


@pytest.fixture
def group() -> Group:
    group = Group()
    group.run(2 * TICK)
    return group


def test_all_up_stays_in_epoch_zero_and_every_member_reads(group: Group):
    assert group.epochs() == {0}
    assert all(replica.read_refusal() is None for replica in group.replicas.values())


def test_two_replicas_down_the_others_form_an_epoch_after_their_leases_ran_out(group: Group):
    group.down |= {"r4", "r5"}
    killed_at = group.clock.now
    while group.epochs(NAMES[:3]) != {1}:
        group.run(TICK)
        assert group.clock.now - killed_at < 3 * LEASE
    took = group.clock.now - killed_at
    assert took >= LEASE * (1 + CLOCK_RATE) + MARGIN - TICK  # the leases they may hold ran out first
    assert group.replicas["r1"].members() == {"r1", "r2", "r3"}
    for name in NAMES[:3]:
        assert group.replicas[name].transaction_refusal(1) is None
        assert group.replicas[name].read_refusal() is None or name == "r1"
    assert group.replicas["r1"].transaction_refusal(0) is not None  # a late write of epoch 0


def test_a_paused_replica_stops_reading_before_the_others_write_without_it(group: Group):
    group.down.add("r5")
    paused = group.replicas["r5"]
    installed_at = None
    while installed_at is None:
        group.run(TICK)
        if group.replicas["r1"].epoch.number == 1:
            installed_at = group.clock.now
    assert paused.read_refusal() is not None  # its clock ran on: its lease is over
    group.down.discard("r5")  # SIGCONT: it has not heard of epoch 1 yet, and still refuses reads
    assert paused.epoch.number == 0 and paused.read_refusal() is not None


def test_a_replica_cut_off_one_way_loses_its_lease_and_the_others_write_on(group: Group):
    # r5 still reaches the others (its renewals are answered); none of them reaches r5
    group.cut |= {(name, "r5") for name in NAMES[:4]}
    cut_at = group.clock.now
    while group.epochs(NAMES[:4]) != {1}:
        group.run(TICK)
        assert group.clock.now - cut_at < 5 * LEASE, group.replicas["r1"].stalled
    assert group.replicas["r1"].members() == set(NAMES[:4])
    cut_off = group.replicas["r5"]
    assert cut_off.read_refusal() is not None
    group.run(TICK)  # it hears of epoch 1 in the answers it still gets
    assert cut_off.epoch.number == 1 and cut_off.role() == "outside the epoch"
    group.cut.clear()
    group.run(LEASE)
    assert group.epochs() == {2} and group.replicas["r5"].role() == "catching up"


def test_a_returning_replica_is_taken_back_as_a_newcomer_that_copies_its_data(group: Group):
    group.down.add("r5")
    group.run(3 * LEASE)
    assert group.replicas["r1"].members() == {"r1", "r2", "r3", "r4"}
    group.restart("r5")
    group.run(LEASE)
    assert group.epochs() == {2}
    assert group.replicas["r5"].members() == set(NAMES)
    assert group.resets == ["r5"] and group.replicas["r5"].role() == "catching up"
    assert group.replicas["r5"].read_refusal() is not None
    group.complete["r5"] = True  # the copy finished
    group.run(LEASE)
    assert group.replicas["r5"].read_refusal() is None


def test_three_down_no_epoch_and_no_writes_then_a_majority_back_resumes(group: Group):
    group.down |= {"r3", "r4", "r5"}
    group.run(3 * LEASE)
    assert group.epochs(["r1", "r2"]) == {0}
    assert "no majority" in (group.replicas["r1"].stalled or "")
    assert group.replicas["r1"].read_refusal() is not None  # leases need a majority too
    group.restart("r3")  # a restarted voter waits a lease before it leaves anyone out: a few tries
    group.run(2 * LEASE)
    (number,) = group.epochs(["r1", "r2", "r3"])
    assert number > 0 and group.replicas["r1"].members() == {"r1", "r2", "r3"}
    assert group.replicas["r1"].coordinate_refusal() is None


def test_stale_replicas_cannot_form_an_epoch_without_a_complete_member_of_the_latest(group: Group):
    group.down |= {"r4", "r5"}
    group.run(3 * LEASE)  # epoch 1 = r1, r2, r3 writes on
    assert group.epochs(NAMES[:3]) == {1}
    group.down |= {"r1", "r2"}
    group.complete["r3"] = False  # r3 never held complete data of epoch 1 (say it was copying)
    group.restart("r4")
    group.restart("r5")
    group.run(3 * LEASE)
    assert group.epochs(["r3", "r4", "r5"]) <= {0, 1}
    assert all(group.replicas[name].members() != {"r3", "r4", "r5"} for name in ["r3", "r4", "r5"])
    group.complete["r3"] = True
    group.run(2 * LEASE)
    assert group.epochs(["r3", "r4", "r5"]) == {2}
    assert sorted(group.replicas["r3"].plan()["newcomers"]) == ["r4", "r5"]


def test_the_epoch_and_the_promise_survive_a_restart(group: Group):
    group.down.add("r5")
    group.run(3 * LEASE)
    group.restart("r2")
    assert group.replicas["r2"].epoch.number == 1 and group.replicas["r2"].members() == set(NAMES[:4])


def test_a_proposer_that_dies_after_the_votes_leaves_no_replica_fenced_for_long(group: Group):
    group.down.add("r5")
    group.run(3 * LEASE)
    r1 = group.replicas["r1"]
    before = r1.epoch.number
    # r1 collects votes for a later epoch and dies before it installs it anywhere
    for name in NAMES[:4]:
        assert group.replicas[name].vote(before + 5, NAMES[:4], "r1")["vote"]
    assert group.replicas["r2"].transaction_refusal(before) is not None  # fenced: epoch `before` writes no more
    group.down.add("r1")
    group.run(3 * LEASE)
    (number,) = group.epochs(["r2", "r3", "r4"])
    assert number > before + 5 and group.replicas["r2"].members() == {"r2", "r3", "r4"}
    assert group.replicas["r2"].transaction_refusal(number) is None
    assert r1.epoch.number == before


def test_the_epoch_without_a_dead_coordinator_settles_what_it_left_in_doubt(group: Group):
    """r5 coordinated two writes and died: t1's COMMIT reached r2 (it may have
    been acknowledged), t2 was still PREPARED everywhere (it surely was not)."""
    for name in NAMES[:4]:
        group.held[name].states.update({"r5:b:1:1": PREPARED, "r5:b:2:1": PREPARED, "r1:b:1:1": PREPARED})
        group.held[name].coordinators.update({"r5:b:1:1": "r5", "r5:b:2:1": "r5", "r1:b:1:1": "r1"})
    group.held["r2"].states["r5:b:1:1"] = COMMIT
    group.down.add("r5")
    group.run(3 * LEASE)
    assert group.replicas["r1"].members() == set(NAMES[:4])
    for name in NAMES[:4]:
        assert group.held[name].states == {"r5:b:1:1": COMMIT, "r5:b:2:1": ABORT, "r1:b:1:1": PREPARED}
    assert group.replicas["r3"].plan()["settled"] == {"r5:b:1:1": COMMIT, "r5:b:2:1": ABORT}


def test_a_replica_that_voted_to_leave_a_coordinator_out_applies_none_of_its_commits(group: Group):
    group.down.add("r5")
    group.run(LEASE * 1.2)  # r5's lease ran out at the voters; the vote below is allowed
    r2 = group.replicas["r2"]
    assert r2.commit_refusal("r5:b:1:1") is None
    assert r2.vote(r2.epoch.number + 3, NAMES[:4], "r1")["vote"]
    assert "settles r5" in r2.commit_refusal("r5:b:1:1")
    assert r2.commit_refusal("r1:b:1:1") is None  # a member's commits go on


def test_a_replica_that_shuts_down_is_left_out_without_waiting_out_its_lease(group: Group):
    leaving = group.replicas["r5"]
    leaving.leave(group.call_from("r5"))
    assert leaving.read_refusal() is not None  # it gave up its lease before it told anyone
    group.down.add("r5")
    stopped_at = group.clock.now
    while group.replicas["r1"].members() != set(NAMES[:4]):
        group.run(TICK)
    assert group.clock.now - stopped_at < LEASE / 2  # not a whole lease (and margin) later
    group.restart("r5")  # it comes back: taken in again as a newcomer
    group.run(LEASE)
    assert group.replicas["r1"].members() == set(NAMES)
