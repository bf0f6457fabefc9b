"""The backup sessions of one replica: bounded, paged, and closed when left idle (a fake clock)."""
from __future__ import annotations

import pytest

from rmi_kv.core import validation
from rmi_kv.core.snapshot_sessions import SnapshotSessions
from rmi_kv.errors import InvalidRequest, ReplicaUnavailable


class FakeSnapshot:
    digest, live_keys, taken_at = "0" * 64, 2, 1.0

    def __init__(self) -> None:
        self.closed = False

    def page(self, after_key, limit):
        if self.closed:
            raise ValueError("the snapshot is closed")
        rows = [("a", "1", 1), ("b", "2", 1)]
        rows = [row for row in rows if after_key is None or row[0] > after_key]
        return rows[:limit], len(rows) > limit

    def close(self) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def made():
    return []


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def sessions(made, clock):
    def open_snapshot():
        made.append(FakeSnapshot())
        return made[-1]

    return SnapshotSessions("replica1", open_snapshot, limit=2, idle=10.0, clock=clock)


def test_a_session_hands_out_pages_and_closes(sessions, made):
    session_id, snapshot = sessions.open()
    assert validation.check_snapshot_id(session_id) == session_id
    assert sessions.page(session_id, None, 1) == ([("a", "1", 1)], True)
    assert sessions.page(session_id, "a", 1) == ([("b", "2", 1)], False)
    assert sessions.close(session_id) and made[0].closed and len(sessions) == 0
    assert not sessions.close(session_id)
    with pytest.raises(InvalidRequest, match="start the save again"):
        sessions.page(session_id, None, 1)


def test_only_a_few_sessions_are_open_at_once(sessions):
    first, _ = sessions.open()
    sessions.open()
    with pytest.raises(ReplicaUnavailable, match="2 snapshots open already"):
        sessions.open()
    sessions.close(first)
    sessions.open()
    assert len(sessions) == 2


def test_a_session_left_idle_is_closed_and_a_used_one_stays(sessions, made, clock):
    idle, _ = sessions.open()
    used, _ = sessions.open()
    for _ in range(3):
        clock.now += 6.0
        sessions.page(used, None, 1)
    assert made[0].closed and not made[1].closed
    with pytest.raises(InvalidRequest, match="idle for more than 10 s"):
        sessions.page(idle, None, 1)
    clock.now += 11.0
    assert sessions.expire() == 1 and made[1].closed and len(sessions) == 0


def test_closing_every_session(sessions, made):
    sessions.open()
    sessions.open()
    sessions.close_all()
    assert all(snapshot.closed for snapshot in made) and len(sessions) == 0


@pytest.mark.parametrize("bad", [None, 7, "", "A" * 32, "g" * 32, "0" * 31, ["0" * 32]])
def test_a_snapshot_id_must_be_32_hex_digits(bad):
    with pytest.raises(InvalidRequest):
        validation.check_snapshot_id(bad)
