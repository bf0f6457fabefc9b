"""What a committed write does to a key, as pure functions every storage engine calls.

An entry is ``(value, version)``; a delete leaves a tombstone ``(None,
version)``, so versions keep growing and a newer write can always be told
from an older one. The data digest is the sum (modulo 2**256) of a hash of
every live entry: it changes by a difference per write, so replicas holding
the same entries have the same digest whatever order the writes came in.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence, Tuple

#: (value, version); a value of None is a tombstone
Entry = Tuple[Optional[str], int]

DIGEST_MODULUS = 1 << 256


def entry_hash(key: str, value: str, version: int) -> int:
    """Hash of one live (key, value, version) triple, unambiguous for any strings."""
    encoded_key = key.encode("utf-8", "surrogatepass")
    encoded_value = value.encode("utf-8", "surrogatepass")
    material = b"%d:%s%d:%s%d" % (len(encoded_key), encoded_key, len(encoded_value), encoded_value, version)
    return int.from_bytes(hashlib.sha256(material).digest(), "big")


def digest_hex(total: int) -> str:
    """The digest as it is shown and compared: 64 hex digits."""
    return f"{total % DIGEST_MODULUS:064x}"


@dataclass(frozen=True)
class Change:
    """The effect of storing one entry of one key."""

    #: the entry the key holds afterwards
    entry: Entry
    #: to add to the digest (then reduce modulo DIGEST_MODULUS)
    digest_delta: int
    #: how the number of live keys changes: -1, 0 or +1
    live_delta: int


def write(key: str, current: Optional[Entry], value: Optional[str]) -> Optional[Change]:
    """A committed write of ``value`` (None: a delete) to ``key``, whose entry is
    ``current`` (None: never written): the version is bumped, a delete leaves a
    tombstone. None when nothing changes (deleting an absent or deleted key)."""
    old_value, old_version = current if current is not None else (None, 0)
    if value is None and old_value is None:
        return None
    return replace(key, current, (value, old_version + 1))


def replace(key: str, current: Optional[Entry], new: Entry) -> Change:
    """``new`` stored as it is in place of ``current`` (an entry copied from a peer)."""
    digest_delta = live_delta = 0
    if current is not None and current[0] is not None:
        digest_delta -= entry_hash(key, current[0], current[1])
        live_delta -= 1
    if new[0] is not None:
        digest_delta += entry_hash(key, new[0], new[1])
        live_delta += 1
    return Change(new, digest_delta, live_delta)


def missing_from_copy(buffered: Sequence[Tuple[str, Mapping[str, Optional[str]]]],
                      last_writer: Callable[[str], Optional[str]]) -> list[Tuple[str, str, Optional[str]]]:
    """The writes (txid, key, value) of ``buffered`` commits (txid, writes, in
    commit order) that copied data does not hold yet, in the order to apply them.

    Per key, commits happen in the same order on every replica. If the copied
    entry of a key was last written (``last_writer``) by one of the buffered
    transactions, that one and the ones before it are in the copy already;
    the later ones are not.
    """
    txids_by_key: dict[str, set[str]] = {}
    for txid, writes in buffered:
        for key in writes:
            txids_by_key.setdefault(key, set()).add(txid)
    copied_up_to: dict[str, str] = {}
    for key, txids in txids_by_key.items():
        writer = last_writer(key)
        if writer is not None and writer in txids:
            copied_up_to[key] = writer
    missing = []
    for txid, writes in buffered:
        for key, value in writes.items():
            if key in copied_up_to:
                if copied_up_to[key] == txid:
                    del copied_up_to[key]  # later writes to this key are not in the copy
                continue
            missing.append((txid, key, value))
    return missing
