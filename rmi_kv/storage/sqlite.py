"""Durable state of one replica in SQLite: committed data and the 2PC log.

Committed data is ``kv(key, value, version, txid)``; a delete leaves a
tombstone (value NULL) so versions keep growing and a newer write can always
be told from an older one; ``txid`` is the transaction that wrote the entry
last, which makes applying a transaction twice harmless and lets a replica
that is catching up tell which of its writes a copied entry already holds. The two-phase commit log has three tables:

- ``prepared``: the participant's PREPARED records (forced before voting YES);
- ``outcomes``: what this participant learned of finished transactions, so late
  or repeated messages and peers' questions get the same answer;
- ``decisions``: the coordinator's COMMIT records (forced: the commit point),
  kept until every participant has acknowledged.

``members`` is the member list this replica knows, with each member's last
known URI, and the members an operator removed: the name server only says
where members are, never who they are.

Forced writes of concurrent threads share one SQLite commit, and so one fsync
(group commit): the first waiting thread commits for everyone queued.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, TypeVar

T = TypeVar("T")
Writes = Mapping[str, Optional[str]]

_DIGEST_MODULUS = 1 << 256

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
    created REAL NOT NULL
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

from rmi_kv.core.messages import ABORT, COMMIT  # noqa: E402  (the log records the protocol's outcomes)
#: the state of a database its replica has not yet decided to catch up or serve from
NEW = "new"


def entry_hash(key: str, value: str, version: int) -> int:
    """Hash of one live (key, value, version) triple, unambiguous for any strings."""
    encoded_key = key.encode("utf-8", "surrogatepass")
    encoded_value = value.encode("utf-8", "surrogatepass")
    material = b"%d:%s%d:%s%d" % (len(encoded_key), encoded_key, len(encoded_value), encoded_value, version)
    return int.from_bytes(hashlib.sha256(material).digest(), "big")


def digest_hex(total: int) -> str:
    return f"{total % _DIGEST_MODULUS:064x}"


@dataclass(frozen=True)
class PreparedRecord:
    txid: str
    writes: dict
    coordinator: str
    participants: tuple
    created: float


@dataclass(frozen=True)
class DecisionRecord:
    txid: str
    participants: tuple
    created: float


class Storage:
    """SQLite-backed committed data plus the 2PC log of one replica."""

    def __init__(self, path: str | Path, durable: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.durable = durable
        self._writer = self._connect()
        self._writer.executescript(SCHEMA)
        self._local = threading.local()
        self._closed = False
        # group commit: queued operations, and whether a thread is committing
        self._queue_lock = threading.Lock()
        self._queue: list[_PendingWrite] = []
        self._committing = False
        self._commit_done = threading.Condition(self._queue_lock)
        #: forced SQLite commits (each one fsync) and the operations they carried
        self.forced_commits = self.forced_operations = 0
        self._meta_cache = {row[0]: row[1] for row in self._writer.execute("SELECT name, value FROM meta")}
        self._digest = int(self._meta_cache.get("digest", "0"), 16)
        self._committed = int(self._meta_cache.get("committed", "0"))
        self._aborted = int(self._meta_cache.get("aborted", "0"))
        self._live_keys = int(self._meta_cache.get("live_keys", "-1"))
        if self._live_keys < 0:
            self._live_keys = self._writer.execute("SELECT COUNT(*) FROM kv WHERE value IS NOT NULL").fetchone()[0]
        if "born_us" not in self._meta_cache:
            self._set_metas({"born_us": str(time.time_ns() // 1000), "state": NEW})
        #: a new database whose replica has not yet decided whether it must catch up
        #: (still true after a crash before that decision)
        self.created_now = self._meta_cache.get("state") == NEW
        #: when this database was created: the replica knows nothing from before
        self.born_us = int(self._meta_cache["born_us"])

    # ------------------------------------------------------------------ set-up
    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'OFF'}")
        return connection

    def _reader(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
            connection.execute("PRAGMA query_only=1")
            self._local.connection = connection
        return connection

    def close(self) -> None:
        with self._queue_lock:
            while self._committing:
                self._commit_done.wait()
            self._closed = True
        self._writer.close()

    def _set_meta(self, name: str, value: str) -> None:
        self._set_metas({name: value})

    def _set_metas(self, values: Mapping[str, str]) -> None:
        """Force several meta entries in one write."""
        self._write(lambda c: c.executemany(
            "INSERT INTO meta(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            list(values.items())))
        self._meta_cache.update(values)

    @property
    def catching_up(self) -> bool:
        """True while this replica copies committed data from a peer."""
        return self._meta_cache.get("state") == "catching_up"

    def set_catching_up(self, value: bool) -> None:
        self._set_meta("state", "catching_up" if value else "serving")
        self.created_now = False

    # ------------------------------------------------------------ group commit
    def _write(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``operation`` inside a forced SQLite transaction, sharing the
        commit (and its fsync) with whatever other threads have queued."""
        return self._write_many([operation])[0].result()

    def _write_many(self, operations: list[Callable[[sqlite3.Connection], object]]) -> list["_PendingWrite"]:
        """Run ``operations`` in one forced commit (shared with other threads'
        queued writes); each one succeeds or fails on its own."""
        pendings = [_PendingWrite(operation) for operation in operations]
        if not pendings:
            return pendings
        with self._queue_lock:
            if self._closed:
                raise RuntimeError("storage is closed")
            self._queue.extend(pendings)
            while self._committing and not pendings[-1].done:
                self._commit_done.wait()
            if pendings[-1].done:
                return pendings
            self._committing = True
            batch, self._queue = self._queue, []
        try:
            self._commit_batch(batch)
        except Exception:
            pass  # every operation of the batch holds the error
        finally:
            with self._queue_lock:
                self._committing = False
                self._commit_done.notify_all()
        return pendings

    def _commit_batch(self, batch: list["_PendingWrite"]) -> None:
        connection = self._writer
        counters_before = self._counters()
        try:
            connection.execute("BEGIN IMMEDIATE")
            if len(batch) == 1:  # alone: its failure rolls back the whole (one-operation) transaction
                batch[0].value = batch[0].operation(connection)
            else:
                self._run_isolated(connection, batch)
            if self._counters() != counters_before:
                self._flush_meta(connection)
            connection.execute("COMMIT")
            self.forced_commits += 1
            self.forced_operations += len(batch)
        except BaseException as error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            self._reload_meta()
            for pending in batch:
                pending.error = pending.error or error
                pending.done = True
            raise
        for pending in batch:
            pending.done = True

    def _run_isolated(self, connection: sqlite3.Connection, batch: list["_PendingWrite"]) -> None:
        """Run each operation in a savepoint: one bad operation must not sink the batch."""
        for index, pending in enumerate(batch):
            savepoint = f"op{index}"
            connection.execute(f"SAVEPOINT {savepoint}")
            counters = self._counters()
            try:
                pending.value = pending.operation(connection)
                connection.execute(f"RELEASE {savepoint}")
            except Exception as error:
                connection.execute(f"ROLLBACK TO {savepoint}")
                connection.execute(f"RELEASE {savepoint}")
                self._digest, self._committed, self._aborted, self._live_keys = counters
                pending.error = error

    def _counters(self) -> tuple[int, int, int, int]:
        return self._digest, self._committed, self._aborted, self._live_keys

    def _flush_meta(self, connection: sqlite3.Connection) -> None:
        connection.executemany(
            "INSERT INTO meta(name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            [("digest", digest_hex(self._digest)), ("committed", str(self._committed)),
             ("aborted", str(self._aborted)), ("live_keys", str(self._live_keys))],
        )

    def _reload_meta(self) -> None:
        meta = {row[0]: row[1] for row in self._writer.execute("SELECT name, value FROM meta")}
        self._digest = int(meta.get("digest", "0"), 16)
        self._committed = int(meta.get("committed", "0"))
        self._aborted = int(meta.get("aborted", "0"))
        self._live_keys = int(meta.get("live_keys", "0"))

    # ------------------------------------------------------------------- reads
    def get(self, key: str) -> Optional[tuple[str, int]]:
        """The live (value, version) of ``key``, or None when absent or deleted."""
        row = self._reader().execute("SELECT value, version FROM kv WHERE key = ?", (key,)).fetchone()
        if row is None or row[0] is None:
            return None
        return row[0], row[1]

    def get_entry(self, key: str) -> Optional[tuple[Optional[str], int]]:
        """(value, version) including tombstones (value None)."""
        row = self._reader().execute("SELECT value, version FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else (row[0], row[1])

    def keys(self, prefix: str = "", limit: int = 1000, *, after: Optional[str] = None) -> list[str]:
        """Live keys starting with ``prefix``, sorted, at most ``limit``; with ``after``, only
        those after it (a cursor: the last key of the page before)."""
        # keys sharing a prefix are contiguous in key order: start at the later bound, stop at
        # the first key without the prefix
        operator, start = (">", after) if after is not None and after >= prefix else (">=", prefix)
        rows = self._reader().execute(
            f"SELECT key FROM kv WHERE key {operator} ? AND value IS NOT NULL ORDER BY key", (start,))
        found = []
        for (key,) in rows:
            if not key.startswith(prefix) or len(found) >= limit:
                break
            found.append(key)
        rows.close()
        return found

    def entries(self) -> Iterable[tuple[str, Optional[str], int]]:
        """Every (key, value, version), tombstones included, in key order."""
        return self._reader().execute("SELECT key, value, version FROM kv ORDER BY key")

    @property
    def digest(self) -> str:
        return digest_hex(self._digest)

    @property
    def live_keys(self) -> int:
        return self._live_keys

    @property
    def committed_count(self) -> int:
        return self._committed

    @property
    def aborted_count(self) -> int:
        return self._aborted

    def recompute_digest(self) -> str:
        """The digest computed from scratch (for checks; the kept one is incremental)."""
        total = 0
        for key, value, version in self.entries():
            if value is not None:
                total += entry_hash(key, value, version)
        return digest_hex(total)

    # -------------------------------------------------------- participant log
    def log_prepared(self, txid: str, writes: Writes, coordinator: str, participants: Iterable[str]) -> None:
        """Force PREPARED(txid, writes, coordinator): after this the vote may be YES."""
        error = self.log_prepared_many([(txid, writes, coordinator, participants)])[0]
        if error is not None:
            raise error

    def log_prepared_many(self, records: list[tuple]) -> list[Optional[BaseException]]:
        """Force several PREPARED records (txid, writes, coordinator,
        participants) in one commit; the error of each, or None."""
        return self.commit_and_prepare([], records)[1]

    def commit_and_prepare(self, commits: list[tuple], records: list[tuple]) -> tuple[list, list]:
        """``apply_commit`` for each of ``commits`` (txid, writes, decision),
        then force the PREPARED ``records`` (txid, writes, coordinator,
        participants), all in one forced commit; the error of each, or None."""
        now = time.time()

        def insert(txid: str, writes: Writes, coordinator: str, participants: Iterable[str]):
            row = (txid, json.dumps(dict(writes), ensure_ascii=False), coordinator,
                   json.dumps(list(participants)), now)
            return lambda c: c.execute(
                "INSERT OR IGNORE INTO prepared(txid, writes, coordinator, participants, created) "
                "VALUES (?, ?, ?, ?, ?)", row)

        operations = [self._committer(*commit) for commit in commits] + [insert(*record) for record in records]
        errors = [pending.error for pending in self._write_many(operations)]
        return errors[:len(commits)], errors[len(commits):]

    def prepared(self) -> list[PreparedRecord]:
        rows = self._read_all("SELECT txid, writes, coordinator, participants, created FROM prepared ORDER BY created")
        return [PreparedRecord(r[0], json.loads(r[1]), r[2], tuple(json.loads(r[3])), r[4]) for r in rows]

    def apply_commit(self, txid: str, writes: Writes, decision: Optional[Iterable[str]] = None) -> None:
        """Force: apply ``writes``, bump versions, mark txid committed, drop its PREPARED record.

        With ``decision`` (the participants), the coordinator's COMMIT record
        is forced in the same write: the commit point and the local apply at once.
        """
        error = self.apply_commits([(txid, writes, decision)])[0]
        if error is not None:
            raise error

    def apply_commits(self, commits: list[tuple]) -> list[Optional[BaseException]]:
        """``apply_commit`` for several (txid, writes, decision) in one forced
        commit; the error of each, or None."""
        return self.commit_and_prepare(commits, [])[0]

    def _committer(self, txid: str, writes: Writes, decision: Optional[Iterable[str]]):
        def operation(connection: sqlite3.Connection) -> None:
            if decision is not None:
                _insert_decision(connection, txid, decision)
            if connection.execute("SELECT 1 FROM outcomes WHERE txid = ?", (txid,)).fetchone():
                return  # already applied: a repeated doCommit changes nothing
            self._apply_writes(connection, writes, txid)
            self._finish_commit(connection, txid)

        return operation

    def _finish_commit(self, connection: sqlite3.Connection, txid: str) -> None:
        connection.execute("DELETE FROM prepared WHERE txid = ?", (txid,))
        connection.execute("INSERT INTO outcomes(txid, outcome, decided) VALUES (?, ?, ?)",
                           (txid, COMMIT, time.time()))
        self._committed += 1

    def _apply_writes(self, connection: sqlite3.Connection, writes: Writes, txid: str) -> None:
        for key, value in writes.items():
            row = connection.execute("SELECT value, version, txid FROM kv WHERE key = ?", (key,)).fetchone()
            old_value, old_version, old_txid = (row if row is not None else (None, 0, None))
            if old_txid == txid or (value is None and old_value is None):
                continue  # applied already, or deleting an absent key: nothing changes
            self._put_entry(connection, key, value, old_version + 1, txid, old_value, old_version)
        self._digest %= _DIGEST_MODULUS

    def _put_entry(self, connection: sqlite3.Connection, key: str, value: Optional[str], version: int,
                   txid: Optional[str], old_value: Optional[str], old_version: int) -> None:
        """Write one entry, keeping the digest and the live key count in step."""
        if old_value is not None:
            self._digest -= entry_hash(key, old_value, old_version)
            self._live_keys -= 1
        connection.execute(
            "INSERT INTO kv(key, value, version, txid) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value, version = excluded.version, "
            "txid = excluded.txid", (key, value, version, txid))
        if value is not None:
            self._digest += entry_hash(key, value, version)
            self._live_keys += 1

    # ---------------------------------------------------------------- catch-up
    def buffer_commit(self, txid: str, writes: Writes, decision: Optional[Iterable[str]] = None) -> None:
        """Force: a commit that arrives while catching up waits in a buffer,
        durable and acknowledged, until the copied data is complete (with
        ``decision``, the coordinator's COMMIT record goes in the same write)."""
        def operation(connection: sqlite3.Connection) -> None:
            if decision is not None:
                _insert_decision(connection, txid, decision)
            if connection.execute("SELECT 1 FROM outcomes WHERE txid = ?", (txid,)).fetchone():
                return
            connection.execute("INSERT OR IGNORE INTO catchup_buffer(txid, writes) VALUES (?, ?)",
                               (txid, json.dumps(dict(writes), ensure_ascii=False)))
            self._finish_commit(connection, txid)

        self._write(operation)

    def read_chunk(self, after_key: Optional[str], limit: int) -> list[tuple]:
        """Up to ``limit`` entries (key, value, version, txid), tombstones too, after ``after_key``."""
        if after_key is None:
            rows = self._reader().execute(
                "SELECT key, value, version, txid FROM kv ORDER BY key LIMIT ?", (limit,))
        else:
            rows = self._reader().execute(
                "SELECT key, value, version, txid FROM kv WHERE key > ? ORDER BY key LIMIT ?", (after_key, limit))
        return [tuple(row) for row in rows]

    def install_entries(self, entries: Iterable[tuple]) -> None:
        """Force: store entries copied from a peer, replacing what is here."""
        batch = list(entries)

        def operation(connection: sqlite3.Connection) -> None:
            for key, value, version, txid in batch:
                row = connection.execute("SELECT value, version FROM kv WHERE key = ?", (key,)).fetchone()
                old_value, old_version = row if row is not None else (None, 0)
                self._put_entry(connection, key, value, version, txid, old_value, old_version)
            self._digest %= _DIGEST_MODULUS

        self._write(operation)

    def finish_catch_up(self) -> int:
        """Force: apply the buffered commits the copied data does not hold yet.

        Per key, commits happen in the same order on every replica. If the
        copied entry was last written by one of the buffered transactions,
        that one and the ones before it are already in the copy; the rest
        are applied on top. Returns how many writes were applied.
        """

        def operation(connection: sqlite3.Connection) -> int:
            buffered = [(txid, json.loads(writes)) for txid, writes in connection.execute(
                "SELECT txid, writes FROM catchup_buffer ORDER BY seq")]
            txids_by_key: dict[str, set] = {}
            for txid, writes in buffered:
                for key in writes:
                    txids_by_key.setdefault(key, set()).add(txid)
            copied_up_to: dict[str, str] = {}
            for key, txids in txids_by_key.items():
                row = connection.execute("SELECT txid FROM kv WHERE key = ?", (key,)).fetchone()
                if row is not None and row[0] in txids:
                    copied_up_to[key] = row[0]
            applied = 0
            for txid, writes in buffered:
                for key, value in writes.items():
                    if key in copied_up_to:
                        if copied_up_to[key] == txid:
                            del copied_up_to[key]  # later writes to this key are not in the copy
                        continue
                    self._apply_writes(connection, {key: value}, txid)
                    applied += 1
            connection.execute("DELETE FROM catchup_buffer")
            connection.execute("INSERT INTO meta(name, value) VALUES ('state', 'serving') "
                               "ON CONFLICT(name) DO UPDATE SET value = excluded.value")
            return applied

        applied = self._write(operation)
        self._meta_cache["state"] = "serving"
        return applied

    def record_abort(self, txid: str, prepared: bool = False) -> None:
        """Mark txid aborted (dropping any PREPARED record); a later canCommit for it votes NO.

        It counts as an aborted transaction when it had a PREPARED record, or
        ``prepared`` says it was prepared (a coordinator's own vote has no record).
        """

        def operation(connection: sqlite3.Connection) -> None:
            if connection.execute("SELECT 1 FROM outcomes WHERE txid = ?", (txid,)).fetchone():
                return
            had_prepared = connection.execute("DELETE FROM prepared WHERE txid = ?", (txid,)).rowcount
            connection.execute("INSERT INTO outcomes(txid, outcome, decided) VALUES (?, ?, ?)",
                               (txid, ABORT, time.time()))
            if had_prepared or prepared:
                self._aborted += 1

        self._write(operation)

    def outcome(self, txid: str) -> Optional[str]:
        """"commit" or "abort" if this participant knows the outcome, else None."""
        row = self._read_all("SELECT outcome FROM outcomes WHERE txid = ?", (txid,))
        return row[0][0] if row else None

    def forget_outcomes(self, older_than: float) -> int:
        """Drop outcome records decided before ``older_than`` (epoch seconds).

        From then on, the absence of a record says nothing about transactions
        started before that time (see ``knows_nothing_before_us``).
        """
        horizon_us = str(int(older_than * 1_000_000))

        def operation(connection: sqlite3.Connection) -> int:
            connection.execute("INSERT INTO meta(name, value) VALUES ('forgotten_before_us', ?) "
                               "ON CONFLICT(name) DO UPDATE SET value = excluded.value", (horizon_us,))
            return connection.execute("DELETE FROM outcomes WHERE decided < ?", (older_than,)).rowcount

        removed = self._write(operation)
        self._meta_cache["forgotten_before_us"] = horizon_us
        return removed

    @property
    def forgotten_before_us(self) -> int:
        return int(self._meta_cache.get("forgotten_before_us", "0"))

    @property
    def knows_nothing_before_us(self) -> int:
        """Transactions started before this time (epoch µs) may have been decided
        here without a record left: this database did not exist, or forgot them."""
        return max(self.born_us, self.forgotten_before_us)

    # -------------------------------------------------------- coordinator log
    def log_decision(self, txid: str, participants: Iterable[str]) -> None:
        """Force COMMIT(txid, participants): the commit point of the transaction."""
        participants = list(participants)
        self._write(lambda connection: _insert_decision(connection, txid, participants))

    def decisions(self) -> list[DecisionRecord]:
        rows = self._read_all("SELECT txid, participants, created FROM decisions ORDER BY created")
        return [DecisionRecord(r[0], tuple(json.loads(r[1])), r[2]) for r in rows]

    def has_decision(self, txid: str) -> bool:
        return bool(self._read_all("SELECT 1 FROM decisions WHERE txid = ?", (txid,)))

    def forget_decisions(self, txids: Iterable[str]) -> None:
        """Drop COMMIT records every participant has acknowledged."""
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

    def _read_all(self, sql: str, parameters: tuple = ()) -> list[tuple]:
        """All rows of a query, through this thread's read connection."""
        return self._reader().execute(sql, parameters).fetchall()


def _insert_decision(connection: sqlite3.Connection, txid: str, participants: Iterable[str]) -> None:
    connection.execute("INSERT OR IGNORE INTO decisions(txid, participants, created) VALUES (?, ?, ?)",
                       (txid, json.dumps(list(participants)), time.time()))


class _PendingWrite:
    __slots__ = ("operation", "value", "error", "done")

    def __init__(self, operation: Callable[[sqlite3.Connection], object]) -> None:
        self.operation = operation
        self.value: object = None
        self.error: Optional[BaseException] = None
        self.done = False

    def result(self):
        if self.error is not None:
            raise self.error
        return self.value
