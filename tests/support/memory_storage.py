"""A storage engine in plain dicts, with no durability: evidence that the
interfaces of ``rmi_kv.storage.interfaces`` are all the core needs.

What a write does to a key comes from ``rmi_kv.core.ops``, as in the SQLite
engine. ``MemoryImage`` is what it holds; a ``MemoryStorage`` opened again on
the same image sees everything written before (a restart that lost nothing,
as forced writes promise).
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping, Optional, Sequence

from rmi_kv.core import ops
from rmi_kv.core.messages import ABORT, COMMIT
from rmi_kv.storage import integrity
from rmi_kv.storage.integrity import RangeSummary, Verification
from rmi_kv.storage.interfaces import (
    AlreadyDecided, Commit, DecisionRecord, Errors, Prepare, PreparedRecord, Repair, SnapshotEntry, Writes)

NEW, CATCHING_UP, SERVING = "new", "catching_up", "serving"


@dataclass
class MemoryImage:
    """Everything a ``MemoryStorage`` keeps."""

    #: key -> (value or None, version, txid of the last writer)
    kv: dict = field(default_factory=dict)
    prepared: dict = field(default_factory=dict)
    #: txid -> (outcome, decided at, epoch seconds)
    outcomes: dict = field(default_factory=dict)
    decisions: dict = field(default_factory=dict)
    #: txid -> writes of a commit buffered while catching up, in commit order
    buffer: dict = field(default_factory=dict)
    members: dict = field(default_factory=dict)
    state: str = NEW
    epoch_state: Optional[dict] = None
    born_us: int = field(default_factory=lambda: time.time_ns() // 1000)
    forgotten_before_us: int = 0
    digest: int = 0
    live_keys: int = 0
    committed: int = 0
    aborted: int = 0
    integrity: dict = field(default_factory=dict)


class MemoryStorage:
    """``interfaces.ReplicaStorage`` (and the member list) over a ``MemoryImage``."""

    def __init__(self, image: Optional[MemoryImage] = None) -> None:
        self._image = image if image is not None else MemoryImage()
        self._lock = threading.RLock()
        self._closed = False
        self.created_now = self._image.state == NEW
        self.forced_commits = self.forced_operations = 0

    @contextlib.contextmanager
    def _forced(self, operations: int = 1) -> Iterator[MemoryImage]:
        """One forced write: refused once closed, counted like the SQLite engine's."""
        with self._lock:
            if self._closed:
                raise RuntimeError("storage is closed")
            yield self._image
            self.forced_commits += 1
            self.forced_operations += operations

    def close(self) -> None:
        with self._lock:
            self._closed = True

    # ------------------------------------------------------------------- data
    def get(self, key: str) -> Optional[tuple[str, int]]:
        value, version, _ = self._image.kv.get(key, (None, 0, None))
        return None if value is None else (value, version)

    def keys(self, prefix: str = "", *, limit: int = 1000, after: Optional[str] = None) -> list[str]:
        return [key for key, _ in self.items(prefix, limit=limit, after=after)]

    def items(self, prefix: str = "", *, limit: int = 1000, after: Optional[str] = None) -> list[tuple[str, str]]:
        with self._lock:
            live = sorted((key, value) for key, (value, _, _) in self._image.kv.items() if value is not None)
        return [(key, value) for key, value in live if key.startswith(prefix) and (after is None or key > after)][:limit]

    def count(self, prefix: str = "") -> int:
        with self._lock:
            return sum(1 for key, (value, _, _) in self._image.kv.items() if value is not None and key.startswith(prefix))

    def read_chunk(self, after_key: Optional[str], limit: int) -> list[SnapshotEntry]:
        with self._lock:
            kv = dict(self._image.kv)
        keys = sorted(key for key in kv if after_key is None or key > after_key)[:limit]
        return [(key, *kv[key]) for key in keys]

    @property
    def digest(self) -> str:
        return ops.digest_hex(self._image.digest)

    @property
    def live_keys(self) -> int:
        return self._image.live_keys

    def _store(self, key: str, change: ops.Change, txid: Optional[str]) -> None:
        image = self._image
        image.kv[key] = (*change.entry, txid)
        image.digest = (image.digest + change.digest_delta) % ops.DIGEST_MODULUS
        image.live_keys += change.live_delta

    def _apply_writes(self, writes: Writes, txid: str) -> None:
        for key, value in writes.items():
            entry = self._image.kv.get(key)
            if entry is not None and entry[2] == txid:
                continue  # applied already
            change = ops.write(key, None if entry is None else entry[:2], value)
            if change is not None:
                self._store(key, change, txid)

    # -------------------------------------------------------- participant log
    def prepared(self) -> list[PreparedRecord]:
        with self._lock:
            return sorted(self._image.prepared.values(), key=lambda record: record.created)

    def outcome(self, txid: str) -> Optional[str]:
        known = self._image.outcomes.get(txid)
        return None if known is None else known[0]

    def commit_and_prepare(self, commits: Sequence[Commit], records: Sequence[Prepare]) -> tuple[Errors, Errors]:
        if not commits and not records:
            return [], []
        now = time.time()
        prepare_errors: list = []
        with self._forced(len(commits) + len(records)) as image:
            for txid, writes, decision in commits:
                self._commit(txid, writes, decision, buffered=False)
            for txid, writes, coordinator, participants, *reads in records:
                known = image.outcomes.get(txid)
                if known is not None:  # a late vote: nothing is written
                    prepare_errors.append(AlreadyDecided(txid, known[0]))
                    continue
                image.prepared.setdefault(txid, PreparedRecord(txid, dict(writes), coordinator,
                                                               tuple(participants), now, tuple(*reads)))
                prepare_errors.append(None)
        return [None] * len(commits), prepare_errors

    def _commit(self, txid: str, writes: Writes, decision: Optional[Sequence[str]], *, buffered: bool) -> None:
        image = self._image
        if decision is not None:
            image.decisions.setdefault(txid, DecisionRecord(txid, tuple(decision), time.time()))
        if txid in image.outcomes:
            return  # already applied: a repeated doCommit changes nothing
        if buffered:
            image.buffer.setdefault(txid, dict(writes))
        else:
            self._apply_writes(writes, txid)
        image.prepared.pop(txid, None)
        image.outcomes[txid] = (COMMIT, time.time())
        image.committed += 1

    def record_abort(self, txid: str, *, prepared: bool = False) -> None:
        with self._forced() as image:
            if txid in image.outcomes:
                return
            had_prepared = image.prepared.pop(txid, None) is not None
            image.outcomes[txid] = (ABORT, time.time())
            if had_prepared or prepared:
                image.aborted += 1

    def forget_outcomes(self, older_than: float) -> int:
        with self._forced() as image:
            image.forgotten_before_us = max(image.forgotten_before_us, int(older_than * 1_000_000))
            old = [txid for txid, (_, decided) in image.outcomes.items() if decided < older_than]
            for txid in old:
                del image.outcomes[txid]
            return len(old)

    @property
    def forgotten_before_us(self) -> int:
        return self._image.forgotten_before_us

    @property
    def knows_nothing_before_us(self) -> int:
        return max(self._image.born_us, self._image.forgotten_before_us)

    @property
    def committed_count(self) -> int:
        return self._image.committed

    @property
    def aborted_count(self) -> int:
        return self._image.aborted

    # ---------------------------------------------------------------- catch-up
    @property
    def catching_up(self) -> bool:
        return self._image.state == CATCHING_UP

    def set_catching_up(self, value: bool) -> None:
        with self._forced() as image:
            image.state = CATCHING_UP if value else SERVING
        self.created_now = False

    def install_entries(self, entries: Iterable[SnapshotEntry]) -> None:
        with self._forced() as image:
            for key, value, version, txid in entries:
                entry = image.kv.get(key)
                self._store(key, ops.replace(key, None if entry is None else entry[:2], (value, version)), txid)

    def buffer_commit(self, txid: str, writes: Writes, *, decision: Optional[Sequence[str]] = None) -> None:
        with self._forced():
            self._commit(txid, writes, decision, buffered=True)

    def finish_catch_up(self) -> int:
        with self._forced() as image:
            missing = ops.missing_from_copy(list(image.buffer.items()),
                                            lambda key: image.kv.get(key, (None, 0, None))[2])
            for txid, key, value in missing:
                self._apply_writes({key: value}, txid)
            image.buffer.clear()
            image.state = SERVING
            return len(missing)

    def reset_for_catch_up(self) -> None:
        with self._forced() as image:
            for table in (image.kv, image.buffer, image.prepared, image.outcomes):
                table.clear()
            image.forgotten_before_us = time.time_ns() // 1000
            image.state = CATCHING_UP
            image.digest = image.live_keys = 0
        self.created_now = False

    # ------------------------------------------------------------------ epochs
    def epoch_state(self) -> Optional[dict]:
        with self._lock:
            return None if self._image.epoch_state is None else dict(self._image.epoch_state)

    def save_epoch_state(self, state: Mapping) -> None:
        with self._forced() as image:
            image.epoch_state = dict(state)

    # --------------------------------------------------------------- integrity
    def _recomputed(self) -> tuple[int, int]:
        live = [(key, value, version) for key, (value, version, _) in self._image.kv.items() if value is not None]
        return sum(ops.entry_hash(*entry) for entry in live) % ops.DIGEST_MODULUS, len(live)

    def verify(self, pace: Callable[[], None] = lambda: None) -> Verification:
        with self._lock:
            total, live = self._recomputed()
            stored = self._image.digest
        damage = None if total == stored else integrity.Damage("the digest recomputed differs", "kv")
        return Verification(damage, len(self._image.kv), live, ops.digest_hex(total), ops.digest_hex(stored))

    def adopt_data_digest(self) -> tuple[str, str]:
        with self._forced() as image:
            before = ops.digest_hex(image.digest)
            image.digest, image.live_keys = self._recomputed()
            return before, ops.digest_hex(image.digest)

    def _range(self, after: Optional[str], upto: Optional[str]) -> list[tuple]:
        with self._lock:
            return sorted((key, *entry) for key, entry in self._image.kv.items()
                          if (after is None or key > after) and (upto is None or key <= upto))

    @staticmethod
    def _summary(after: Optional[str], upto: Optional[str], entries: list) -> RangeSummary:
        live = [entry for entry in entries if entry[1] is not None]
        return RangeSummary(after, upto, len(live), ops.digest_hex(sum(ops.entry_hash(*e[:3]) for e in live)))

    def split_range(self, after: Optional[str], upto: Optional[str], parts: int) -> list[RangeSummary]:
        live = [entry for entry in self._range(after, upto) if entry[1] is not None]
        size = max(1, -(-len(live) // max(1, parts)))
        cuts = [live[index][0] for index in range(size - 1, len(live), size)][:parts - 1]
        if cuts and upto is None and cuts[-1] == live[-1][0]:
            cuts.pop()
        bounds = list(zip([after, *cuts], [*cuts, upto]))
        return self.summarize(bounds)

    def summarize(self, bounds: Sequence[tuple[Optional[str], Optional[str]]]) -> list[RangeSummary]:
        return [self._summary(after, upto, self._range(after, upto)) for after, upto in bounds]

    def range_entries(self, after: Optional[str], upto: Optional[str], limit: int) -> list[SnapshotEntry]:
        return self._range(after, upto)[:limit]

    def repair(self, repairs: Sequence[Repair]) -> int:
        done = 0
        with self._forced() as image:
            for key, expected, replacement in repairs:
                if image.kv.get(key) != (None if expected is None else tuple(expected)):
                    continue
                current = None if expected is None else expected[:2]
                if replacement is None:
                    if current is not None:
                        change = ops.replace(key, current, (None, current[1]))
                        image.digest = (image.digest + change.digest_delta) % ops.DIGEST_MODULUS
                        image.live_keys += change.live_delta
                        del image.kv[key]
                else:
                    self._store(key, ops.replace(key, current, replacement[:2]), replacement[2])
                    outcome = image.outcomes.get(replacement[2])
                    if outcome is not None and outcome[0] == ABORT:
                        image.outcomes[replacement[2]] = (COMMIT, outcome[1])
                done += 1
        return done

    def integrity_record(self) -> dict:
        return dict(self._image.integrity)

    def save_integrity_record(self, record: Mapping) -> None:
        with self._forced() as image:
            image.integrity = dict(record)

    # -------------------------------------------------------- coordinator log
    def log_decision(self, txid: str, participants: Iterable[str]) -> None:
        with self._forced() as image:
            image.decisions.setdefault(txid, DecisionRecord(txid, tuple(participants), time.time()))

    def decisions(self) -> list[DecisionRecord]:
        with self._lock:
            return sorted(self._image.decisions.values(), key=lambda record: record.created)

    def has_decision(self, txid: str) -> bool:
        return txid in self._image.decisions

    @property
    def records_since_us(self) -> int:
        return self._image.born_us

    def forget_decisions(self, txids: Iterable[str]) -> None:
        batch = list(txids)
        if batch:
            with self._forced() as image:
                for txid in batch:
                    image.decisions.pop(txid, None)

    # ---------------------------------------------------------------- members
    def members(self) -> dict[str, tuple[Optional[str], bool]]:
        with self._lock:
            return dict(self._image.members)

    def save_members(self, changes: Mapping[str, tuple[Optional[str], bool]]) -> None:
        if changes:
            with self._forced() as image:
                for name, (uri, removed) in changes.items():
                    kept = image.members.get(name, (None, False))[0]
                    image.members[name] = (uri if uri is not None else kept, removed)
