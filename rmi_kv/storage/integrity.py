"""Integrity of a replica's database: is what is on disk what was written?

SQLite keeps no checksum of the rows, and the digest in ``meta`` is kept by
difference at every write, so neither notices a value changed on disk. Three
checks, in the order they run:

- SQLite's own ``quick_check``: pages, cells and record formats are sound;
- the data: every entry is well-formed (text key, text or no value, a
  positive version), and the digest and the live key count recomputed from
  the rows equal the ones stored in ``meta`` (in the same read transaction,
  so writes may go on meanwhile);
- the two-phase commit log read through: every PREPARED record, outcome,
  COMMIT record, buffered commit and count parses as the engine wrote it.

The first damage found is reported as a ``Damage`` (what, and where).
Range summaries (live entries and digest per key range) let two replicas
find the keys on which they differ without copying everything
(``rmi_kv.core.antientropy``).

A key range is ``(after, upto)``: the keys ``k`` with ``after < k <= upto``;
``None`` leaves that side open.
"""
from __future__ import annotations

import bisect
import concurrent.futures
import hashlib
import json
import multiprocessing
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

from rmi_kv.core import ops
from rmi_kv.core.messages import ABORT, COMMIT

#: rows read between two calls of a pass's ``pace`` (which may sleep, to leave the replica its CPU): about
#: 1.5 ms of hashing, the longest the pass holds the interpreter while writes go on
PACE_ROWS = 500
#: from this many live entries on, the start-up check reads the rows in several processes
PARALLEL_ROWS = 200_000
_FORK = "fork" in multiprocessing.get_all_start_methods()
#: the states ``meta.state`` may hold
_STATES = frozenset({"new", "catching_up", "serving"})


@dataclass(frozen=True)
class Damage:
    """What is wrong with a database, and where."""

    what: str
    where: str

    def line(self) -> str:
        return f"{self.what} ({self.where})"

    def as_dict(self) -> dict:
        return {"what": self.what, "where": self.where}


@dataclass(frozen=True)
class Verification:
    """The result of one check of the data against its stored digest."""

    damage: Optional[Damage]
    #: rows of ``kv`` read (tombstones too) and live entries among them
    rows: int
    live: int
    #: the digest recomputed from the rows, and the one ``meta`` holds
    computed: str
    stored: str
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"ok": self.damage is None, "damage": None if self.damage is None else self.damage.as_dict(),
                "rows": self.rows, "live": self.live, "computed_digest": self.computed,
                "stored_digest": self.stored, "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class RangeSummary:
    """The live entries of one key range: how many, and their digest (``ops.digest_hex``)."""

    after: Optional[str]
    upto: Optional[str]
    live: int
    digest: str

    def as_list(self) -> list:
        return [self.after, self.upto, self.live, self.digest]


def _where_range(after: Optional[str], upto: Optional[str]) -> tuple[str, list]:
    clauses, parameters = [], []
    if after is not None:
        clauses.append("key > ?")
        parameters.append(after)
    if upto is not None:
        clauses.append("key <= ?")
        parameters.append(upto)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", parameters


def _entries(connection: sqlite3.Connection, after: Optional[str], upto: Optional[str]) -> Iterator[tuple]:
    where, parameters = _where_range(after, upto)
    return connection.execute(f"SELECT key, value, version FROM kv{where} ORDER BY key", parameters)


#: every entry of a range as (key as UTF-8, value as UTF-8 or None, version, well-formed): reading
#: the bytes as they are stored spares decoding and encoding them again to hash them
_HASHABLE = ("SELECT CAST(key AS BLOB), CAST(value AS BLOB), version, typeof(key) = 'text' AND "
             "typeof(value) IN ('text', 'null') AND typeof(version) = 'integer' AND version >= 1 FROM kv{where} "
             "ORDER BY key")


def _hashed(connection: sqlite3.Connection, after: Optional[str], upto: Optional[str],
            pace: Callable[[], None] = lambda: None) -> Iterator[tuple[bytes, Optional[int], bool]]:
    """(key as UTF-8, ``ops.entry_hash`` of the entry or None for a tombstone,
    well-formed) of every entry of the range in key order; the same hash as
    ``ops.entry_hash``, computed from the stored bytes."""
    where, parameters = _where_range(after, upto)
    cursor = connection.execute(_HASHABLE.format(where=where), parameters)
    sha256, from_bytes = hashlib.sha256, int.from_bytes
    while True:
        rows = cursor.fetchmany(PACE_ROWS)
        if not rows:
            return
        for key, value, version, sound in rows:
            if not sound:
                yield key, None, False
            elif value is None:
                yield key, None, True
            else:
                material = b"%d:%s%d:%s%d" % (len(key), key, len(value), value, version)
                yield key, from_bytes(sha256(material).digest(), "big"), True
        pace()


def _first_problem(connection: sqlite3.Connection) -> str:
    """What is wrong with the first ill-formed entry (the slow path, once damage is known)."""
    for key, value, version in connection.execute("SELECT key, value, version FROM kv ORDER BY key"):
        problem = _entry_problem(key, value, version)
        if problem is not None:
            return problem
    return "an entry is ill-formed"


def _entry_problem(key: Any, value: Any, version: Any) -> Optional[str]:
    if not isinstance(key, str):
        return f"a key is stored as {type(key).__name__}, not text"
    if value is not None and not isinstance(value, str):
        return f"the value of {key!r} is stored as {type(value).__name__}, not text"
    if not isinstance(version, int) or version < 1:
        return f"the version of {key!r} is {version!r}, not a positive whole number"
    return None


def _tally(connection: sqlite3.Connection, after: Optional[str], upto: Optional[str],
           pace: Callable[[], None] = lambda: None) -> tuple[int, int, int, bool]:
    """(digest total, live entries, rows, every entry well-formed) of a range."""
    total = live = rows = 0
    sound_all = True
    for _, hashed, sound in _hashed(connection, after, upto, pace):
        rows += 1
        if not sound:
            sound_all = False
        elif hashed is not None:
            total += hashed
            live += 1
    return total, live, rows, sound_all


def _read_only(path: str) -> str:
    """The URI that opens ``path`` read-only."""
    return Path(path).resolve().as_uri() + "?mode=ro"


def _tally_file(path: str, after: Optional[str], upto: Optional[str]) -> tuple[int, int, int, bool]:
    """``_tally`` in a process of its own (the start-up check of a large database)."""
    connection = sqlite3.connect(_read_only(path), uri=True, isolation_level=None, timeout=30.0)
    try:
        return _tally(connection, after, upto)
    finally:
        connection.close()


def check_rows(connection: sqlite3.Connection, pace: Callable[[], None] = lambda: None, *,
               path: Optional[str] = None, workers: int = 1) -> Verification:
    """The data against the digest and count ``meta`` holds, in one read
    transaction of ``connection`` (a read-only connection of its own: writes
    on the writer go on meanwhile). With ``path`` and ``workers`` above 1, a
    large database (nothing writing to it) is read in that many processes."""
    connection.execute("BEGIN")
    try:
        meta = dict(connection.execute("SELECT name, value FROM meta WHERE name IN ('digest', 'live_keys')"))
        stored_text = meta.get("digest", ops.digest_hex(0))
        counted = int(meta["live_keys"]) if meta.get("live_keys", "").isdigit() else 0
        if path is not None and workers > 1 and counted >= PARALLEL_ROWS and _FORK:
            cuts = [row[0] for row in (connection.execute("SELECT key FROM kv ORDER BY key LIMIT 1 OFFSET ?",
                                                          (counted * index // workers,)).fetchone()
                                       for index in range(1, workers)) if row is not None]
            bounds = list(zip([None, *cuts], [*cuts, None]))
            # fork: the children only read and hash, and need not import the program's main module again
            context = multiprocessing.get_context("fork")
            with concurrent.futures.ProcessPoolExecutor(len(bounds), mp_context=context) as pool:
                parts = list(pool.map(_tally_file, [path] * len(bounds), *zip(*bounds)))
            total, live, rows = (sum(part[index] for part in parts) for index in range(3))
            sound = all(part[3] for part in parts)
        else:
            total, live, rows, sound = _tally(connection, None, None, pace)
        damage = None if sound else Damage(_first_problem(connection), "table kv")
    finally:
        connection.execute("COMMIT")
    computed = ops.digest_hex(total)
    if damage is None:
        try:
            stored = int(stored_text, 16)
        except (TypeError, ValueError):
            return Verification(Damage(f"the stored digest {stored_text!r} is not a digest", "table meta"),
                                rows, live, computed, str(stored_text))
        if stored != total % ops.DIGEST_MODULUS:
            damage = Damage(f"the digest recomputed from the {live} live entries ({computed[:16]}…) differs from "
                            f"the stored one ({stored_text[:16]}…): some entry changed on disk", "table kv")
        elif "live_keys" in meta and meta["live_keys"] != str(live):
            damage = Damage(f"{live} live entries, where {meta['live_keys']} are counted", "table kv")
    return Verification(damage, rows, live, computed, str(stored_text))


def recompute(connection: sqlite3.Connection) -> tuple[int, int]:
    """(digest total, live entries) recomputed from every row, inside the caller's transaction."""
    total, live, _, _ = _tally(connection, None, None)
    return total % ops.DIGEST_MODULUS, live


def check_structure(connection: sqlite3.Connection) -> Optional[Damage]:
    """SQLite's own quick check of pages, cells and records."""
    problems = [row[0] for row in connection.execute("PRAGMA quick_check(5)")]
    if problems != ["ok"]:
        return Damage("SQLite's integrity check failed: " + "; ".join(problems), "database file")
    return None


def _json(text: Any, kind: type) -> Any:
    value = json.loads(text)
    if not isinstance(value, kind):
        raise ValueError(f"not a JSON {kind.__name__}")
    return value


def _writes_ok(text: Any) -> bool:
    writes = _json(text, dict)
    return all(isinstance(key, str) and (value is None or isinstance(value, str)) for key, value in writes.items())


def _names_ok(text: Any) -> bool:
    return all(isinstance(name, str) for name in _json(text, list))


def check_log(connection: sqlite3.Connection) -> Optional[Damage]:
    """Read the two-phase commit log, the counts and the epoch state through."""
    # a database from before guards has no reads column yet (the engine adds it when it opens one)
    has_reads = "reads" in {row[1] for row in connection.execute("PRAGMA table_info(prepared)")}
    tables: list[tuple[str, str, Callable[[tuple], bool]]] = [
        ("prepared", f"SELECT txid, writes, coordinator, participants, created, {'reads' if has_reads else 'NULL'} "
                     "FROM prepared",
         lambda r: isinstance(r[0], str) and _writes_ok(r[1]) and isinstance(r[2], str) and _names_ok(r[3])
         and isinstance(r[4], float) and (r[5] is None or _names_ok(r[5]))),
        ("outcomes", "SELECT txid, outcome, decided FROM outcomes",
         lambda r: isinstance(r[0], str) and r[1] in (COMMIT, ABORT) and isinstance(r[2], float)),
        ("decisions", "SELECT txid, participants, created FROM decisions",
         lambda r: isinstance(r[0], str) and _names_ok(r[1]) and isinstance(r[2], float)),
        ("catchup_buffer", "SELECT seq, txid, writes FROM catchup_buffer",
         lambda r: isinstance(r[1], str) and _writes_ok(r[2])),
        ("members", "SELECT name, uri, removed FROM members",
         lambda r: isinstance(r[0], str) and (r[1] is None or isinstance(r[1], str)) and r[2] in (0, 1)),
    ]
    for table, sql, sound in tables:
        for row in connection.execute(sql):
            try:
                ok = sound(row)
            except (ValueError, TypeError):
                ok = False
            if not ok:
                return Damage(f"a record does not read back as written: {str(row)[:120]}", f"table {table}")
    meta = dict(connection.execute("SELECT name, value FROM meta"))
    readers: dict[str, Callable[[str], Any]] = {
        "committed": int, "aborted": int, "live_keys": int, "born_us": int, "forgotten_before_us": int,
        "digest": lambda text: int(text, 16), "epoch_state": lambda text: _json(text, dict),
        "state": lambda text: text if text in _STATES else int("not a state"),
    }
    for name, read in readers.items():
        if name in meta:
            try:
                read(meta[name])
            except (ValueError, TypeError):
                return Damage(f"{name} reads {meta[name][:60]!r}", "table meta")
    return None


def check_file(path: str, *, workers: int = 1) -> tuple[Optional[Damage], Optional[Verification]]:
    """The start-up check of the database at ``path``: structure, data (in
    ``workers`` processes when it is large), log. Opens its own connection
    (which also replays the write-ahead log)."""
    try:
        connection = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    except sqlite3.Error as error:
        return Damage(f"the database cannot be opened: {error}", "database file"), None
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        damage = check_structure(connection)
        if damage is not None:
            return damage, None
        verification = check_rows(connection, path=path, workers=workers)
        if verification.damage is not None:
            return verification.damage, verification
        return check_log(connection), verification
    except (sqlite3.Error, ValueError) as error:  # ValueError: text that is not UTF-8
        return Damage(f"the database cannot be read: {type(error).__name__}: {error}", "database file"), None
    finally:
        connection.close()


def salvage(path: str) -> dict:
    """What can still be read of a damaged database and is worth keeping
    (the epoch state and the member list: a replica must not forget what it
    voted for, nor who the members are); each part left out when unreadable."""
    found: dict = {}
    try:
        connection = sqlite3.connect(_read_only(path), uri=True, timeout=5.0)
    except sqlite3.Error:
        return found
    try:
        try:
            row = connection.execute("SELECT value FROM meta WHERE name = 'epoch_state'").fetchone()
            if row is not None:
                found["epoch_state"] = _json(row[0], dict)
        except (sqlite3.Error, ValueError, TypeError):
            pass  # unreadable: left out
        try:
            members = {}
            for name, uri, removed in connection.execute("SELECT name, uri, removed FROM members"):
                if isinstance(name, str) and (uri is None or isinstance(uri, str)) and removed in (0, 1):
                    members[name] = (uri, bool(removed))
            found["members"] = members
        except (sqlite3.Error, ValueError):
            pass  # unreadable: left out
    finally:
        connection.close()
    return found


def split_range(connection: sqlite3.Connection, after: Optional[str], upto: Optional[str],
                parts: int) -> list[RangeSummary]:
    """The range cut into up to ``parts`` consecutive ranges of about as many
    live entries each, with their summaries (one read transaction)."""
    where, parameters = _where_range(after, upto)
    connection.execute("BEGIN")
    try:
        live_where = (where + " AND" if where else " WHERE") + " value IS NOT NULL"
        count = connection.execute(f"SELECT COUNT(*) FROM kv{live_where}", parameters).fetchone()[0]
        per_part = max(1, -(-count // max(1, parts)))
        summaries: list[RangeSummary] = []
        start, total, live = after, 0, 0
        for key, hashed, _ in _hashed(connection, after, upto):
            if hashed is None:
                continue
            total += hashed
            live += 1
            if live == per_part and len(summaries) < parts - 1:
                cut = key.decode("utf-8")
                summaries.append(RangeSummary(start, cut, live, ops.digest_hex(total)))
                start, total, live = cut, 0, 0
    finally:
        connection.execute("COMMIT")
    if summaries and live == 0 and upto is None:
        # the last part would be empty: stretch the one before it to the open end
        previous = summaries.pop()
        summaries.append(RangeSummary(previous.after, None, previous.live, previous.digest))
    else:
        summaries.append(RangeSummary(start, upto, live, ops.digest_hex(total)))
    return summaries


def summarize(connection: sqlite3.Connection, bounds: Sequence[tuple[Optional[str], Optional[str]]]) -> list[RangeSummary]:
    """Summaries of consecutive ranges ``bounds`` (each one's ``after`` the
    ``upto`` of the one before), in one pass and one read transaction."""
    if not bounds:
        return []
    uptos = [upto for _, upto in bounds]
    closed = [upto.encode("utf-8") for upto in uptos if upto is not None]
    totals = [0] * len(bounds)
    lives = [0] * len(bounds)
    connection.execute("BEGIN")
    try:
        for key, hashed, _ in _hashed(connection, bounds[0][0], uptos[-1]):
            if hashed is None:
                continue
            index = bisect.bisect_left(closed, key)  # UTF-8 sorts as the keys do
            totals[index] += hashed
            lives[index] += 1
    finally:
        connection.execute("COMMIT")
    return [RangeSummary(after, upto, lives[i], ops.digest_hex(totals[i])) for i, (after, upto) in enumerate(bounds)]


def range_entries(connection: sqlite3.Connection, after: Optional[str], upto: Optional[str],
                  limit: int) -> list[tuple]:
    """Up to ``limit`` entries (key, value, version, txid) of the range, tombstones too, in key order."""
    where, parameters = _where_range(after, upto)
    return [tuple(row) for row in connection.execute(
        f"SELECT key, value, version, txid FROM kv{where} ORDER BY key LIMIT ?", [*parameters, limit])]


def consecutive(bounds: Iterable[tuple[Optional[str], Optional[str]]]) -> bool:
    """True when each range starts where the one before ended, and keys grow."""
    previous_upto: Any = object()
    for index, (after, upto) in enumerate(bounds):
        if index and after != previous_upto:
            return False
        if after is not None and upto is not None and not after < upto:
            return False
        if index and previous_upto is None:
            return False
        previous_upto = upto
    return True
