"""A consistent read of a replica's committed data while writes go on (backups).

SQLite in WAL mode gives a read transaction a stable view of the database:
the writer keeps committing, and the reader sees the data as it was when its
transaction began. A ``ReadSnapshot`` holds such a transaction on a
read-only connection of its own, reads the digest and the live key count
from ``meta`` in it (the writer updates them in the commit that changes the
data, so they describe exactly this view), and hands out the live entries
page by page in key order. Tombstones are left out: a new cluster needs only
what is live.

While a snapshot is open the WAL cannot be checkpointed past it, so it
grows with the writes meanwhile: close it as soon as the copy is done.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Optional

from rmi_kv.core import ops

#: a live entry as a snapshot hands it out
LiveEntry = tuple[str, str, int]
#: about how many characters of keys and values one page carries at most (a page holds one entry at least)
PAGE_BYTES = 512 * 1024


class ReadSnapshot:
    """One read transaction over the committed data: its digest, its live key count, its entries."""

    def __init__(self, path: str | Path) -> None:
        self._connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
        self._lock = threading.Lock()
        try:
            self._connection.execute("PRAGMA query_only=1")
            self._connection.execute("BEGIN")
            meta = dict(self._connection.execute(
                "SELECT name, value FROM meta WHERE name IN ('digest', 'live_keys')"))
        except BaseException:
            self._connection.close()
            raise
        #: when the view was taken (wall clock, seconds)
        self.taken_at = time.time()
        #: the digest of the live entries of this view (``ops.digest_hex``), as ``meta`` holds it
        self.digest: str = meta.get("digest", ops.digest_hex(0))
        live = meta.get("live_keys", "")
        self.live_keys: int = int(live) if live.isdigit() else self._count()
        self.closed = False

    def _count(self) -> int:
        """Live entries counted from the rows (a database from before the count was kept)."""
        return self._connection.execute("SELECT COUNT(*) FROM kv WHERE value IS NOT NULL").fetchone()[0]

    def page(self, after_key: Optional[str], limit: int, max_bytes: int = PAGE_BYTES) -> tuple[list[LiveEntry], bool]:
        """Up to ``limit`` live entries (key, value, version) after ``after_key`` (None: from the
        first), in key order and about ``max_bytes`` at most; and whether more follow."""
        with self._lock:
            if self.closed:
                raise ValueError("the snapshot is closed")
            if after_key is None:
                rows = self._connection.execute(
                    "SELECT key, value, version FROM kv WHERE value IS NOT NULL ORDER BY key LIMIT ?", (limit + 1,))
            else:
                rows = self._connection.execute(
                    "SELECT key, value, version FROM kv WHERE key > ? AND value IS NOT NULL ORDER BY key LIMIT ?",
                    (after_key, limit + 1))
            entries: list[LiveEntry] = []
            size = 0
            more = False
            for key, value, version in rows:
                if len(entries) >= limit or (entries and size + len(key) + len(value) > max_bytes):
                    more = True
                    break
                entries.append((key, value, version))
                size += len(key) + len(value)
            rows.close()
            return entries, more

    def close(self) -> None:
        """End the read transaction (the WAL may be checkpointed again) and close the connection."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            try:
                self._connection.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._connection.close()
