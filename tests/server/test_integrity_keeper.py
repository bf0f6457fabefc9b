"""The integrity keeper with plain objects: a re-sync by range digests finds
and repairs exactly the keys that differ (A2), a round repairs only from a
majority of quiet members (A1), and a damage found while running is recorded
and acted on (A4). Both storage engines; the peers are storages too."""
from __future__ import annotations

import random

import pytest

from rmi_kv.core import antientropy
from rmi_kv.core.antientropy import DIVERGED, IN_STEP, NO_MAJORITY
from rmi_kv.core.participant import Participant
from rmi_kv.server.integrity import RESYNC_REFUSAL, IntegrityKeeper
from rmi_kv.storage.sqlite import Storage
from support.engines import make_storage  # noqa: F401  (the fixture, over both engines)
from support.hostile_disk import change_behind_the_engine

FIVE = ["r1", "r2", "r3", "r4", "r5"]


class StoragePeer:
    """A member as re-sync calls it (rangeDigests, rangeEntries), answered by a storage."""

    def __init__(self, name, storage):
        self.name = name
        self.storage = storage
        self.calls = []

    def call(self, method, *args, timeout=None):
        self.calls.append(method)
        if method == "rangeDigests":
            after, upto, parts = args
            return [summary.as_list() for summary in self.storage.split_range(after, upto, parts)]
        if method == "rangeEntries":
            after, upto, limit = args
            rows = self.storage.range_entries(after, upto, limit + 1)
            return {"entries": rows[:limit], "more": len(rows) > limit}
        raise AssertionError(method)


class QuietCoordinator:
    def quiet(self):
        return True


class NoFailover:
    enabled = False


class FiveMembers:
    def names(self):
        return list(FIVE)


class Answers:
    """PeerCalls: each peer's digestReport."""

    def __init__(self, reports):
        self.reports = reports

    def __call__(self, names, method, *args, timeout):
        assert method == "digestReport"
        return {name: (self.reports[name], None) for name in names if name in self.reports}


def keeper_for(storage, *, reports=None, peers=None, refusals=None):
    participant = Participant("r3", storage)
    refusals = [] if refusals is None else refusals
    return IntegrityKeeper("r3", storage, participant, QuietCoordinator(), FiveMembers(), NoFailover(),
                           Answers(reports or {}), verify_every=0, antientropy_every=0,
                           refuse=lambda reason, transactions_too: refusals.append(reason),
                           peer_for=lambda name: peers[name])


def populated(make_storage, name, count=3000):
    storage = make_storage(name)
    storage.set_catching_up(False)
    writes = {f"key-{index:05d}": f"value-{index:05d}" for index in range(count)}
    storage.commit_and_prepare([("t-fill", writes, None)], [])
    return storage


def damage(storage, generator):
    """Change a few values, lose a few keys, add a few, undo a delete: what a bad disk leaves."""
    keys = sorted(e[0] for e in storage.range_entries(None, None, 1 << 30))
    picked = generator.sample(keys, 12)
    repairs = [(key, (f"value-{key[4:]}", 1, "t-fill"), ("garbage", 1, "t-fill")) for key in picked[:5]]
    repairs += [(key, (f"value-{key[4:]}", 1, "t-fill"), None) for key in picked[5:9]]
    repairs += [(f"extra-{index}", None, ("stray", 1, "t-stray")) for index in range(2)]
    assert storage.repair(repairs) == len(repairs)
    return 5 + 4 + 2


def test_a_resync_repairs_exactly_the_keys_that_differ(make_storage):
    good = populated(make_storage, "good")
    bad = populated(make_storage, "bad")
    differing = damage(bad, random.Random(3))
    assert bad.digest != good.digest
    peer = StoragePeer("r1", good)
    compared, repaired = keeper_for(bad).resync(peer)
    assert bad.digest == good.digest and bad.live_keys == good.live_keys
    assert repaired == differing
    assert bad.range_entries(None, None, 1 << 30) == good.range_entries(None, None, 1 << 30)
    # only the ranges that differ were looked into: far fewer entries than the 3000 fetched
    assert peer.calls.count("rangeEntries") <= differing
    assert compared < 3000 // antientropy.LEAF_ENTRIES * antientropy.PARTS


def test_a_resync_of_equal_data_changes_nothing(make_storage):
    good = populated(make_storage, "good", 500)
    same = populated(make_storage, "same", 500)
    peer = StoragePeer("r1", good)
    assert keeper_for(same).resync(peer) == (antientropy.PARTS, 0)
    assert "rangeEntries" not in peer.calls


def test_a_round_repairs_from_a_quiet_majority_and_serves_again(make_storage):
    good = populated(make_storage, "good", 400)
    bad = populated(make_storage, "bad", 400)
    damage(bad, random.Random(5))
    report = {"digest": good.digest, "quiet": True, "epoch": None, "member": True}
    refusals = []
    keeper = keeper_for(bad, reports={name: report for name in ("r1", "r2", "r4")},
                        peers={name: StoragePeer(name, good) for name in ("r1", "r2", "r4")}, refusals=refusals)
    found = keeper.compare_round()
    assert found.state == IN_STEP and bad.digest == good.digest
    assert refusals == [RESYNC_REFUSAL, None]  # reads refused while it re-synced, then served again
    assert keeper.last_resync["in_step"] and keeper.last_resync["keys_repaired"] == 11
    record = bad.integrity_record()["damage"][0]
    assert record["found_by"] == "anti-entropy round" and record["repaired_at"] is not None


@pytest.mark.parametrize("reports, state", [
    ({"r1": "good", "r2": "good"}, NO_MAJORITY),                       # two of five hold it: not a majority
    ({"r1": "good", "r2": "good", "r4": "other", "r5": "other"}, NO_MAJORITY),
])
def test_a_round_without_a_majority_repairs_nothing(make_storage, reports, state):
    bad = populated(make_storage, "bad", 100)
    before = bad.digest
    answers = {name: {"digest": digest, "quiet": True, "epoch": None, "member": True}
               for name, digest in reports.items()}
    keeper = keeper_for(bad, reports=answers, peers={})
    assert keeper.compare_round().state == state
    assert bad.digest == before


def test_members_with_something_in_flight_are_not_counted(make_storage):
    bad = populated(make_storage, "bad", 100)
    busy = {"digest": "good", "quiet": False, "epoch": None, "member": True}
    keeper = keeper_for(bad, reports={name: busy for name in ("r1", "r2", "r4", "r5")}, peers={})
    assert keeper.compare_round().state != DIVERGED


def test_the_verify_command_records_damage_and_asks_for_a_round(tmp_path):
    storage = Storage(tmp_path / "live.sqlite3")
    try:
        storage.set_catching_up(False)
        storage.commit_and_prepare([("t-fill", {f"key-{i:03d}": f"value-{i:03d}" for i in range(100)}, None)], [])
        refusals = []
        keeper = keeper_for(storage, refusals=refusals)
        assert keeper.verify_now()["ok"] is True and storage.integrity_record() == {}
        kept = storage.digest
        # a hostile disk: a row changes, the kept digest not
        change_behind_the_engine(tmp_path / "live.sqlite3", "UPDATE kv SET value = 'value-666' WHERE key = 'key-050'")
        result = keeper.verify_now()
        assert result["ok"] is False and result["stored_digest"] == kept
        assert storage.digest == result["computed_digest"] != kept  # A4: the digest is the data's now
        assert refusals == [RESYNC_REFUSAL]
        record = storage.integrity_record()["damage"][0]
        assert record["found_by"] == "verify command" and record["repaired_at"] is None
    finally:
        storage.close()
