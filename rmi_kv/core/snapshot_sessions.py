"""The backup sessions one replica has open: few at once, and closed when left idle.

A session holds a consistent read of the committed data (a ``Snapshot``,
``rmi_kv.storage.snapshot.ReadSnapshot``) while a client copies it page by
page. Each costs the replica a read transaction, and its WAL cannot be
checkpointed meanwhile: so at most ``limit`` are open at once, and one
nobody asked for a page for ``idle`` seconds is closed (a client that went
away costs nothing for long).
"""
from __future__ import annotations

import secrets
import threading
import time
from typing import Callable, Optional, Protocol

from rmi_kv.errors import InvalidRequest, ReplicaUnavailable

#: sessions open at once on one replica
MAX_SESSIONS = 4
#: seconds a session may go without a page before it is closed
IDLE_SECONDS = 60.0


class Snapshot(Protocol):
    """What a session holds (``ReadSnapshot``)."""

    digest: str
    live_keys: int
    taken_at: float

    def page(self, after_key: Optional[str], limit: int) -> tuple[list, bool]: ...

    def close(self) -> None: ...


class SnapshotSessions:
    """Open, page through and close the consistent reads of one replica."""

    def __init__(self, replica: str, open_snapshot: Callable[[], Snapshot], *, limit: int = MAX_SESSIONS,
                 idle: float = IDLE_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.replica = replica
        self._open_snapshot = open_snapshot
        self.limit = limit
        self.idle = idle
        self._clock = clock
        self._lock = threading.Lock()
        #: id -> (snapshot, when last used)
        self._sessions: dict[str, tuple[Snapshot, float]] = {}

    def open(self) -> tuple[str, Snapshot]:
        """A new session: its id and its snapshot. ReplicaUnavailable when ``limit`` are open."""
        self.expire()
        with self._lock:
            if len(self._sessions) >= self.limit:
                raise ReplicaUnavailable(f"{self.replica} has {self.limit} snapshots open already (the most it "
                                         f"keeps at once); try again once one is done, or ask another replica",
                                         replica=self.replica)
            session_id = secrets.token_hex(16)
            self._sessions[session_id] = (self._open_snapshot(), self._clock())
            return session_id, self._sessions[session_id][0]

    def page(self, session_id: str, after_key: Optional[str], limit: int) -> tuple[list, bool]:
        """The next page of ``session_id``'s entries (it counts as use)."""
        self.expire()
        with self._lock:
            found = self._sessions.get(session_id)
            if found is not None:
                self._sessions[session_id] = (found[0], self._clock())
        if found is not None:
            try:
                return found[0].page(after_key, limit)
            except ValueError:  # closed meanwhile
                pass
        raise InvalidRequest(f"{self.replica} has no snapshot {session_id}: it was closed, or left idle for "
                             f"more than {self.idle:g} s; start the save again")

    def close(self, session_id: str) -> bool:
        """Close ``session_id``; False when it was not open (closed already, or expired)."""
        with self._lock:
            found = self._sessions.pop(session_id, None)
        if found is None:
            return False
        found[0].close()
        return True

    def expire(self) -> int:
        """Close the sessions left idle for too long; how many."""
        now = self._clock()
        with self._lock:
            stale = [sid for sid, (_, used) in self._sessions.items() if now - used > self.idle]
            closing = [self._sessions.pop(sid)[0] for sid in stale]
        for snapshot in closing:
            snapshot.close()
        return len(closing)

    def close_all(self) -> None:
        """Close every session (the replica stops)."""
        with self._lock:
            closing = [snapshot for snapshot, _ in self._sessions.values()]
            self._sessions.clear()
        for snapshot in closing:
            snapshot.close()

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)
