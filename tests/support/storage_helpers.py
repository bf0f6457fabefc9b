"""Calls the tests make on any storage engine, written over its interfaces:
the engines themselves keep only what the replica calls."""
from __future__ import annotations

from typing import Iterable, Optional, Sequence

from rmi_kv.core import ops
from rmi_kv.storage.interfaces import Data, ParticipantLog, Writes


def apply_commit(storage: ParticipantLog, txid: str, writes: Writes, *,
                 decision: Optional[Sequence[str]] = None) -> None:
    """Force one commit (with ``decision``, the COMMIT record too); raises its error."""
    [error], _ = storage.commit_and_prepare([(txid, writes, decision)], [])
    if error is not None:
        raise error


def log_prepared(storage: ParticipantLog, txid: str, writes: Writes, coordinator: str,
                 participants: Iterable[str]) -> None:
    """Force one PREPARED record; raises its error."""
    _, [error] = storage.commit_and_prepare([], [(txid, writes, coordinator, tuple(participants))])
    if error is not None:
        raise error


def entries(storage: Data, page: int = 1000) -> list[tuple[str, Optional[str], int]]:
    """Every (key, value, version), tombstones included, in key order."""
    found: list[tuple[str, Optional[str], int]] = []
    after = None
    while True:
        chunk = storage.read_chunk(after, page)
        found += [(key, value, version) for key, value, version, _ in chunk]
        if len(chunk) < page:
            return found
        after = chunk[-1][0]


def entry_of(storage: Data, key: str) -> Optional[ops.Entry]:
    """The (value, version) of ``key``, a tombstone (None, version) too; None when never written."""
    return next(((value, version) for found, value, version in entries(storage) if found == key), None)


def recompute_digest(storage: Data) -> str:
    """The digest computed from the entries (the engines keep theirs incrementally)."""
    return ops.digest_hex(sum(ops.entry_hash(key, value, version)
                              for key, value, version in entries(storage) if value is not None))
