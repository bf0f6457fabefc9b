"""The SQLite engine: the durable state of one replica, behind ``rmi_kv.storage.interfaces``.

Committed data is ``kv(key, value, version, txid)``; what a write does to an
entry (versions, tombstones, the digest) is ``rmi_kv.core.ops``; ``txid`` is
the transaction that wrote the entry last, which makes applying a
transaction twice harmless and lets a replica that is catching up tell which
of its writes a copied entry already holds. The two-phase commit log has
three tables:

- ``prepared``: the participant's PREPARED records (forced before voting YES);
- ``outcomes``: what this participant learned of finished transactions, so late
  or repeated messages and peers' questions get the same answer;
- ``decisions``: the coordinator's COMMIT records (forced: the commit point),
  kept until every participant has acknowledged.

``meta`` holds the counts, the catch-up state and the epoch state
(``rmi_kv.core.failover``: the epoch installed here and the highest one voted
for). ``members`` is the member list this replica knows, with each member's last
known URI, and the members an operator removed: the name server only says
where members are, never who they are.

Forced writes of concurrent threads share one SQLite commit, and so one fsync
(``rmi_kv.storage.group_commit``).
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Sequence, TypeVar

from rmi_kv.core import ops
from rmi_kv.storage import integrity
from rmi_kv.storage.group_commit import GroupCommit, Operation
from rmi_kv.core.messages import ABORT, COMMIT
from rmi_kv.storage.integrity import RangeSummary, Verification
from rmi_kv.storage.snapshot import ReadSnapshot
from rmi_kv.storage.interfaces import (
    AlreadyDecided, Commit, DecisionRecord, Errors, Prepare, PreparedRecord, Repair, SnapshotEntry, Writes)

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT,
    version INTEGER NOT NULL,
    txid TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS catchup_buffer (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    txid TEXT NOT NULL UNIQUE,
    writes TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS prepared (
    txid TEXT PRIMARY KEY,
    writes TEXT NOT NULL,
    coordinator TEXT NOT NULL,
    participants TEXT NOT NULL,
    created REAL NOT NULL,
    reads TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outcomes (
    txid TEXT PRIMARY KEY,
    outcome TEXT NOT NULL,
    decided REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS decisions (
    txid TEXT PRIMARY KEY,
    participants TEXT NOT NULL,
    created REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
    name TEXT PRIMARY KEY,
    uri TEXT,
    removed INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
"""

T = TypeVar("T")

#: the state of a database its replica has not yet decided to catch up or serve from
NEW = "new"

_SET_META = "INSERT INTO meta(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value"
#: writes and keys as the log keeps them (one encoder: json.dumps with options builds one per call)
_as_json = json.JSONEncoder(ensure_ascii=False).encode
#: a PREPARED record, unless the transaction has an outcome (one statement: the vote needs no lookup first)
_PREPARE = ("INSERT OR IGNORE INTO prepared(txid, writes, coordinator, participants, created, reads) "
            "SELECT ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM outcomes WHERE txid = ?)")
#: the four counters in one statement, not four
_SET_COUNTERS = ("INSERT INTO meta(name, value) VALUES (?, ?), (?, ?), (?, ?), (?, ?) "
                 "ON CONFLICT(name) DO UPDATE SET value = excluded.value")


class _Counters:
    """The counts kept in ``meta`` (digest, transactions committed and aborted,
    live keys): in memory between commits, written by the commit that changes
    them (the group commit's ``BatchState``)."""

    digest: int
    committed: int
    aborted: int
    live_keys: int

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.after_rollback(connection)

    def count(self, change: ops.Change) -> None:
        self.digest = (self.digest + change.digest_delta) % ops.DIGEST_MODULUS
        self.live_keys += change.live_delta

    def snapshot(self) -> tuple[int, int, int, int]:
        return self.digest, self.committed, self.aborted, self.live_keys

    def restore(self, snapshot: tuple[int, int, int, int]) -> None:
        self.digest, self.committed, self.aborted, self.live_keys = snapshot

    def before_commit(self, connection: sqlite3.Connection, snapshot: tuple[int, int, int, int]) -> None:
        if self.snapshot() != snapshot:
            connection.execute(_SET_COUNTERS, (
                "digest", ops.digest_hex(self.digest), "committed", str(self.committed),
                "aborted", str(self.aborted), "live_keys", str(self.live_keys)))

    def after_rollback(self, connection: sqlite3.Connection) -> None:
        """(Re)load the counts from the database."""
        meta = dict(connection.execute("SELECT name, value FROM meta"))
        self.digest = int(meta.get("digest", "0"), 16)
        self.committed = int(meta.get("committed", "0"))
        self.aborted = int(meta.get("aborted", "0"))
        if "live_keys" in meta:
            self.live_keys = int(meta["live_keys"])
        else:  # a database from before the count was kept
            self.live_keys = connection.execute("SELECT COUNT(*) FROM kv WHERE value IS NOT NULL").fetchone()[0]


class Storage:
    """SQLite-backed committed data, 2PC log and member list of one replica
    (implements ``interfaces.ReplicaStorage`` and ``wire.peers.MemberStore``)."""

    def __init__(self, path: str | Path, *, durable: bool = True) -> None:
        """Open (or create) the database at ``path``; ``durable=False`` skips the
        fsyncs (synchronous=OFF), for tests and benchmarks that need no durability."""
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = self._connect(durable)
        self._writer.executescript(SCHEMA)
        if "reads" not in {row[1] for row in self._writer.execute("PRAGMA table_info(prepared)")}:
            self._writer.execute("ALTER TABLE prepared ADD COLUMN reads TEXT")  # a database from before guards
        self._local = threading.local()
        #: bumped to make every thread's read connection start again with an empty page cache
        self._reader_generation = 0
        self._counters = _Counters(self._writer)
        self._group_commit = GroupCommit(self._writer, self._counters)
        self._meta_cache = dict(self._writer.execute("SELECT name, value FROM meta"))
        if "born_us" not in self._meta_cache:
            self._set_metas({"born_us": str(time.time_ns() // 1000), "state": NEW})
        #: a new database whose replica has not yet decided whether it must catch up
        #: (still true after a crash before that decision)
        self.created_now = self._meta_cache.get("state") == NEW
        #: when this database was created: the replica knows nothing from before
        self._born_us = int(self._meta_cache["born_us"])

    # ------------------------------------------------------------------ set-up
    def _connect(self, durable: bool) -> sqlite3.Connection:
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=30.0)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
        return connection

    def _reader(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is not None and self._local.generation != self._reader_generation:
            connection.close()  # its page cache may hold pages the disk no longer does
            connection = None
        if connection is None:
            connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=30.0)
            connection.execute("PRAGMA query_only=1")
            self._local.connection, self._local.generation = connection, self._reader_generation
        return connection

    def close(self) -> None:
        self._group_commit.close()
        try:  # fold the write-ahead log into the database: the file alone then holds everything
            self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # a reader still open elsewhere: the log stays, and is replayed at the next open
        self._writer.close()

    @property
    def forced_commits(self) -> int:
        return self._group_commit.forced_commits

    @property
    def forced_operations(self) -> int:
        return self._group_commit.forced_operations

    def _write(self, operation: Operation[T], *, repeatable: bool = True) -> T:
        return self._group_commit.write(operation, repeatable=repeatable)

    def _set_metas(self, values: Mapping[str, str]) -> None:
        """Force several meta entries in one write."""
        self._write(lambda c: c.executemany(_SET_META, list(values.items())))
        self._meta_cache.update(values)

    def _read_all(self, sql: str, parameters: tuple = ()) -> list[tuple]:
        """All rows of a query, through this thread's read connection."""
        return self._reader().execute(sql, parameters).fetchall()

    # ------------------------------------------------------------------- data
    def get(self, key: str) -> Optional[tuple[str, int]]:
        row = self._reader().execute("SELECT value, version FROM kv WHERE key = ?", (key,)).fetchone()
        if row is None or row[0] is None:
            return None
        return row[0], row[1]

    def keys(self, prefix: str = "", *, limit: int = 1000, after: Optional[str] = None) -> list[str]:
        return [row[0] for row in self._prefixed("key", prefix, limit, after)]  # the values are not read

    def items(self, prefix: str = "", *, limit: int = 1000, after: Optional[str] = None) -> list[tuple[str, str]]:
        return [(key, value) for key, value in self._prefixed("key, value", prefix, limit, after)]

    def _prefixed(self, columns: str, prefix: str, limit: int, after: Optional[str]) -> list[tuple]:
        """``columns`` of up to ``limit`` live entries whose key starts with ``prefix``, after ``after``."""
        # keys sharing a prefix are contiguous in key order: start at the later bound, stop at
        # the first key without the prefix
        operator, start = (">", after) if after is not None and after >= prefix else (">=", prefix)
        rows = self._reader().execute(
            f"SELECT {columns} FROM kv WHERE key {operator} ? AND value IS NOT NULL ORDER BY key", (start,))
        found: list[tuple] = []
        for row in rows:
            if not row[0].startswith(prefix) or len(found) >= limit:
                break
            found.append(tuple(row))
        rows.close()
        return found

    def count(self, prefix: str = "") -> int:
        if not prefix:
            return self.live_keys
        rows = self._reader().execute("SELECT key FROM kv WHERE key >= ? AND value IS NOT NULL ORDER BY key", (prefix,))
        counted = 0
        for (key,) in rows:
            if not key.startswith(prefix):
                break
            counted += 1
        rows.close()
        return counted

    def read_chunk(self, after_key: Optional[str], limit: int) -> list[SnapshotEntry]:
        if after_key is None:
            rows = self._reader().execute(
                "SELECT key, value, version, txid FROM kv ORDER BY key LIMIT ?", (limit,))
        else:
            rows = self._reader().execute(
                "SELECT key, value, version, txid FROM kv WHERE key > ? ORDER BY key LIMIT ?", (after_key, limit))
        return [tuple(row) for row in rows]

    def open_snapshot(self) -> ReadSnapshot:
        """A consistent view of the committed data, on a connection of its own, while writes go on (backups)."""
        return ReadSnapshot(self._path)

    @property
    def digest(self) -> str:
        return ops.digest_hex(self._counters.digest)

    @property
    def live_keys(self) -> int:
        return self._counters.live_keys

    def _apply_writes(self, connection: sqlite3.Connection, writes: Writes, txid: str) -> None:
        for key, value in writes.items():
            row = connection.execute("SELECT value, version, txid FROM kv WHERE key = ?", (key,)).fetchone()
            if row is not None and row[2] == txid:
                continue  # applied already
            change = ops.write(key, None if row is None else (row[0], row[1]), value)
            if change is not None:
                self._store(connection, key, change, txid)

    def _store(self, connection: sqlite3.Connection, key: str, change: ops.Change, txid: Optional[str]) -> None:
        """Write one entry, keeping the digest and the live key count in step."""
        value, version = change.entry
        connection.execute(
            "INSERT INTO kv(key, value, version, txid) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value, version = excluded.version, "
            "txid = excluded.txid", (key, value, version, txid))
        self._counters.count(change)

    # --------------------------------------------------------------- integrity
    def verify(self, pace: Callable[[], None] = lambda: None) -> Verification:
        connection = sqlite3.connect(self._path, isolation_level=None, timeout=30.0)
        try:
            connection.execute("PRAGMA query_only=1")
            damage = integrity.check_structure(connection)
            if damage is not None:
                return Verification(damage, 0, 0, "", self.digest)
            return integrity.check_rows(connection, pace)
        except (sqlite3.Error, ValueError) as error:  # ValueError: text that is not UTF-8
            return Verification(integrity.Damage(f"the database cannot be read: {type(error).__name__}: {error}",
                                                 "database file"), 0, 0, "", self.digest)
        finally:
            connection.close()

    def adopt_data_digest(self) -> tuple[str, str]:
        def operation(connection: sqlite3.Connection) -> tuple[str, str]:
            # what the disk holds, not what this connection's page cache remembers
            connection.execute("PRAGMA shrink_memory")
            before = ops.digest_hex(self._counters.digest)
            self._counters.digest, self._counters.live_keys = integrity.recompute(connection)
            # written even when equal: the counters' snapshot may not show a change
            connection.executemany(_SET_META, [("digest", ops.digest_hex(self._counters.digest)),
                                               ("live_keys", str(self._counters.live_keys))])
            return before, ops.digest_hex(self._counters.digest)

        digests = self._write(operation)
        self._reader_generation += 1
        return digests

    def split_range(self, after: Optional[str], upto: Optional[str], parts: int) -> list[RangeSummary]:
        return integrity.split_range(self._reader(), after, upto, parts)

    def summarize(self, bounds: Sequence[tuple[Optional[str], Optional[str]]]) -> list[RangeSummary]:
        return integrity.summarize(self._reader(), bounds)

    def range_entries(self, after: Optional[str], upto: Optional[str], limit: int) -> list[SnapshotEntry]:
        return integrity.range_entries(self._reader(), after, upto, limit)

    def repair(self, repairs: Sequence[Repair]) -> int:
        def operation(connection: sqlite3.Connection) -> int:
            done = 0
            for key, expected, replacement in repairs:
                row = connection.execute("SELECT value, version, txid FROM kv WHERE key = ?", (key,)).fetchone()
                if (None if row is None else tuple(row)) != (None if expected is None else tuple(expected)):
                    continue  # changed since it was compared: the next round looks again
                current = None if row is None else (row[0], row[1])
                if replacement is None:
                    if row is not None:
                        self._counters.count(ops.replace(key, current, (None, row[1])))
                        connection.execute("DELETE FROM kv WHERE key = ?", (key,))
                else:
                    value, version, txid = replacement
                    self._store(connection, key, ops.replace(key, current, (value, version)), txid)
                    if txid is not None:  # its last writer committed: an ABORT recorded here was lost data
                        connection.execute("UPDATE outcomes SET outcome = ? WHERE txid = ? AND outcome = ?",
                                           (COMMIT, txid, ABORT))
                done += 1
            return done

        return self._write(operation)

    def integrity_record(self) -> dict:
        text = self._meta_cache.get("integrity")
        try:
            record = json.loads(text) if text is not None else {}
        except ValueError:  # only a report: an unreadable one is no reason to fail
            return {}
        return record if isinstance(record, dict) else {}

    def save_integrity_record(self, record: Mapping) -> None:
        self._set_metas({"integrity": json.dumps(dict(record), sort_keys=True)})

    # -------------------------------------------------------- participant log
    def prepared(self) -> list[PreparedRecord]:
        rows = self._read_all("SELECT txid, writes, coordinator, participants, created, reads FROM prepared "
                              "ORDER BY created")
        return [PreparedRecord(r[0], json.loads(r[1]), r[2], tuple(json.loads(r[3])), r[4],
                               tuple(json.loads(r[5])) if r[5] else ()) for r in rows]

    def outcome(self, txid: str) -> Optional[str]:
        row = self._read_all("SELECT outcome FROM outcomes WHERE txid = ?", (txid,))
        return row[0][0] if row else None

    def commit_and_prepare(self, commits: Sequence[Commit], records: Sequence[Prepare]) -> tuple[Errors, Errors]:
        now = time.time()

        def insert(txid: str, writes: Writes, coordinator: str, participants: Iterable[str],
                   reads: Sequence[str] = ()) -> Operation:
            row = (txid, _as_json(dict(writes)), coordinator,
                   json.dumps(list(participants)), now, _as_json(list(reads)) if reads else None, txid)

            def operation(connection: sqlite3.Connection) -> None:
                if connection.execute(_PREPARE, row).rowcount == 0:  # an outcome, or a record already
                    known = connection.execute("SELECT outcome FROM outcomes WHERE txid = ?", (txid,)).fetchone()
                    if known is not None:
                        raise AlreadyDecided(txid, known[0])

            return operation

        operations = [self._committer(*commit) for commit in commits] + [insert(*record) for record in records]
        errors = [pending.error for pending in self._group_commit.write_many(operations)]
        return errors[:len(commits)], errors[len(commits):]

    def _committer(self, txid: str, writes: Writes, decision: Optional[Iterable[str]]) -> Operation:
        def operation(connection: sqlite3.Connection) -> None:
            if decision is not None:
                _insert_decision(connection, txid, decision)
            if not self._finish_commit(connection, txid, prepared=decision is None):
                return  # decided already: a repeated doCommit changes nothing
            self._apply_writes(connection, writes, txid)

        return operation

    def _finish_commit(self, connection: sqlite3.Connection, txid: str, *, prepared: bool = True) -> bool:
        """Record ``txid``'s COMMIT and drop its PREPARED record; False (nothing
        done) when it has an outcome already. ``prepared=False``: it has no
        PREPARED record here (the coordinator's own participant never writes one)."""
        if connection.execute("INSERT OR IGNORE INTO outcomes(txid, outcome, decided) VALUES (?, ?, ?)",
                              (txid, COMMIT, time.time())).rowcount == 0:
            return False
        if prepared:
            connection.execute("DELETE FROM prepared WHERE txid = ?", (txid,))
        self._counters.committed += 1
        return True

    def record_abort(self, txid: str, *, prepared: bool = False) -> None:
        def operation(connection: sqlite3.Connection) -> None:
            if _has_outcome(connection, txid):
                return
            had_prepared = connection.execute("DELETE FROM prepared WHERE txid = ?", (txid,)).rowcount
            connection.execute("INSERT INTO outcomes(txid, outcome, decided) VALUES (?, ?, ?)",
                               (txid, ABORT, time.time()))
            if had_prepared or prepared:
                self._counters.aborted += 1

        self._write(operation)

    def forget_outcomes(self, older_than: float) -> int:
        def operation(connection: sqlite3.Connection) -> tuple[int, int]:
            # never back: a catch-up set it to the moment its copy began, and the outcomes it emptied
            # stay forgotten (a doCommit re-sent for one of them must still be acknowledged, not refused)
            row = connection.execute("SELECT value FROM meta WHERE name = 'forgotten_before_us'").fetchone()
            horizon_us = max(int(older_than * 1_000_000), int(row[0]) if row else 0)
            connection.execute(_SET_META, ("forgotten_before_us", str(horizon_us)))
            return connection.execute("DELETE FROM outcomes WHERE decided < ?", (older_than,)).rowcount, horizon_us

        removed, horizon_us = self._write(operation)
        self._meta_cache["forgotten_before_us"] = str(max(horizon_us, self.forgotten_before_us))
        return removed

    @property
    def forgotten_before_us(self) -> int:
        return int(self._meta_cache.get("forgotten_before_us", "0"))

    @property
    def records_since_us(self) -> int:
        return self._born_us

    @property
    def knows_nothing_before_us(self) -> int:
        return max(self._born_us, self.forgotten_before_us)

    @property
    def committed_count(self) -> int:
        return self._counters.committed

    @property
    def aborted_count(self) -> int:
        return self._counters.aborted

    # ---------------------------------------------------------------- catch-up
    @property
    def catching_up(self) -> bool:
        return self._meta_cache.get("state") == "catching_up"

    def set_catching_up(self, value: bool) -> None:
        self._set_metas({"state": "catching_up" if value else "serving"})
        self.created_now = False

    def install_entries(self, entries: Iterable[SnapshotEntry]) -> None:
        batch = list(entries)

        def operation(connection: sqlite3.Connection) -> None:
            for key, value, version, txid in batch:
                row = connection.execute("SELECT value, version FROM kv WHERE key = ?", (key,)).fetchone()
                self._store(connection, key, ops.replace(key, row, (value, version)), txid)

        self._write(operation)

    def restore(self, entries: Iterable[tuple[str, str, int]], txid: str, digest: str) -> None:
        """Force, in one transaction: the live ``entries`` (key, value, version) of a backup, each
        marked as written by ``txid``, into this new and empty database, which then serves (it
        copies from nobody). Nothing is kept if it fails midway, or if the data's digest is not
        ``digest`` then (ValueError); ValueError too when the database is not new and empty."""
        if not self.created_now or self._read_all("SELECT 1 FROM kv LIMIT 1"):
            raise ValueError("the database is not new and empty")

        def operation(connection: sqlite3.Connection) -> None:
            for key, value, version in entries:
                row = connection.execute("SELECT value, version FROM kv WHERE key = ?", (key,)).fetchone()
                self._store(connection, key, ops.replace(key, row, (value, version)), txid)
            restored = ops.digest_hex(self._counters.digest)
            if restored != digest:
                raise ValueError(f"the restored entries have digest {restored}, not {digest}")
            connection.execute(_SET_META, ("state", "serving"))

        self._write(operation, repeatable=False)  # it consumes ``entries``, which may be a stream
        self._meta_cache["state"] = "serving"
        self.created_now = False

    def buffer_commit(self, txid: str, writes: Writes, *, decision: Optional[Sequence[str]] = None) -> None:
        def operation(connection: sqlite3.Connection) -> None:
            if decision is not None:
                _insert_decision(connection, txid, decision)
            if self._finish_commit(connection, txid, prepared=decision is None):
                connection.execute("INSERT OR IGNORE INTO catchup_buffer(txid, writes) VALUES (?, ?)",
                                   (txid, _as_json(dict(writes))))

        self._write(operation)

    def finish_catch_up(self) -> int:
        def operation(connection: sqlite3.Connection) -> int:
            def last_writer(key: str) -> Optional[str]:
                row = connection.execute("SELECT txid FROM kv WHERE key = ?", (key,)).fetchone()
                return None if row is None else row[0]

            buffered = [(txid, json.loads(writes)) for txid, writes in connection.execute(
                "SELECT txid, writes FROM catchup_buffer ORDER BY seq")]
            missing = ops.missing_from_copy(buffered, last_writer)
            for txid, key, value in missing:
                self._apply_writes(connection, {key: value}, txid)
            connection.execute("DELETE FROM catchup_buffer")
            connection.execute(_SET_META, ("state", "serving"))
            return len(missing)

        applied = self._write(operation)
        self._meta_cache["state"] = "serving"
        return applied

    def reset_for_catch_up(self) -> None:
        horizon_us = str(time.time_ns() // 1000)

        def operation(connection: sqlite3.Connection) -> None:
            for table in ("kv", "catchup_buffer", "prepared", "outcomes"):
                connection.execute(f"DELETE FROM {table}")
            connection.executemany(_SET_META, [("state", "catching_up"), ("forgotten_before_us", horizon_us)])
            self._counters.digest, self._counters.live_keys = 0, 0

        self._write(operation)
        self._meta_cache.update({"state": "catching_up", "forgotten_before_us": horizon_us})
        self.created_now = False

    # ------------------------------------------------------------------ epochs
    def epoch_state(self) -> Optional[dict]:
        text = self._meta_cache.get("epoch_state")
        return None if text is None else json.loads(text)

    def save_epoch_state(self, state: Mapping) -> None:
        self._set_metas({"epoch_state": json.dumps(dict(state), sort_keys=True)})

    # -------------------------------------------------------- coordinator log
    def log_decision(self, txid: str, participants: Iterable[str]) -> None:
        participants = list(participants)
        self._write(lambda connection: _insert_decision(connection, txid, participants))

    def decisions(self) -> list[DecisionRecord]:
        rows = self._read_all("SELECT txid, participants, created FROM decisions ORDER BY created")
        return [DecisionRecord(r[0], tuple(json.loads(r[1])), r[2]) for r in rows]

    def has_decision(self, txid: str) -> bool:
        return bool(self._read_all("SELECT 1 FROM decisions WHERE txid = ?", (txid,)))

    def forget_decisions(self, txids: Iterable[str]) -> None:
        batch = [(txid,) for txid in txids]
        if batch:
            self._write(lambda c: c.executemany("DELETE FROM decisions WHERE txid = ?", batch))

    # ---------------------------------------------------------------- members
    def members(self) -> dict[str, tuple[Optional[str], bool]]:
        """Every member this replica ever knew: name -> (last known URI, removed)."""
        rows = self._read_all("SELECT name, uri, removed FROM members")
        return {name: (uri, bool(removed)) for name, uri, removed in rows}

    def save_members(self, changes: Mapping[str, tuple[Optional[str], bool]]) -> None:
        """Force member entries (name -> (URI, removed)); a URI of None keeps the one stored."""
        rows = [(name, uri, int(removed)) for name, (uri, removed) in changes.items()]
        if rows:
            self._write(lambda c: c.executemany(
                "INSERT INTO members(name, uri, removed) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                "uri = COALESCE(excluded.uri, members.uri), removed = excluded.removed", rows))


def _has_outcome(connection: sqlite3.Connection, txid: str) -> bool:
    return connection.execute("SELECT 1 FROM outcomes WHERE txid = ?", (txid,)).fetchone() is not None


def _insert_decision(connection: sqlite3.Connection, txid: str, participants: Iterable[str]) -> None:
    connection.execute("INSERT OR IGNORE INTO decisions(txid, participants, created) VALUES (?, ?, ?)",
                       (txid, json.dumps(list(participants)), time.time()))
