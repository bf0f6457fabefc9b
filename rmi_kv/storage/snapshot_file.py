"""The snapshot file: a backup of one replica's committed data, and its checks.

JSON lines, UTF-8. The first line is the header::

    {"format": "rmi_kv snapshot", "version": 1, "replica": "replica2",
     "taken_at": 1700000000.123, "keys": 3, "digest": "<64 hex digits>"}

then one line per live entry, in key order: ``[key, value, version]``. The
digest is the replica's (``rmi_kv.core.ops``: the sum of the entries' hashes);
it is recomputed from the entries whenever the file is written or read, so a
damaged or cut file is refused, never restored.

A file is written as ``FILE.tmp`` and renamed to ``FILE`` once complete and
checked: a failed save never leaves a half file under the name.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, TextIO

from rmi_kv.core import ops
from rmi_kv.errors import SnapshotDamaged

FORMAT = "rmi_kv snapshot"
VERSION = 1
_HEADER_FIELDS = ("replica", "taken_at", "keys", "digest")


@dataclass(frozen=True)
class SnapshotInfo:
    """What a snapshot file holds, and whether it checks out."""

    path: str
    replica: str
    taken_at: float
    #: live keys and digest the header gives
    keys: int
    digest: str
    #: entries read, and the digest recomputed from them
    entries: int
    computed_digest: str
    size: int

    @property
    def ok(self) -> bool:
        return self.entries == self.keys and self.computed_digest == self.digest

    def as_dict(self) -> dict:
        return {"file": self.path, "replica": self.replica, "taken_at": self.taken_at, "keys": self.keys,
                "digest": self.digest, "entries": self.entries, "computed_digest": self.computed_digest,
                "size": self.size, "digest_ok": self.ok}


def temporary_path(path: str | Path) -> Path:
    """Where a snapshot is written before it is complete."""
    return Path(f"{path}.tmp")


class SnapshotWriter:
    """Writes a snapshot to ``FILE.tmp``, and renames it to ``FILE`` once its entries match the header."""

    def __init__(self, path: str | Path, *, replica: str, taken_at: float, keys: int, digest: str) -> None:
        self.path = Path(path)
        self.header = {"format": FORMAT, "version": VERSION, "replica": replica, "taken_at": taken_at,
                       "keys": keys, "digest": digest}
        self._temporary = temporary_path(self.path)
        self._file: Optional[TextIO] = open(self._temporary, "w", encoding="utf-8", newline="\n")
        self._total = 0
        self._entries = 0
        self._last_key: Optional[str] = None
        self._file.write(json.dumps(self.header, ensure_ascii=False) + "\n")

    def add(self, key: str, value: str, version: int) -> None:
        """One live entry (in key order)."""
        assert self._file is not None, "the snapshot is finished"
        _check_entry([key, value, version], self._last_key, self._entries + 2)
        self._file.write(json.dumps([key, value, version], ensure_ascii=False) + "\n")
        self._total += ops.entry_hash(key, value, version)
        self._entries += 1
        self._last_key = key

    def finish(self) -> SnapshotInfo:
        """Check the entries against the header, force the file to disk and rename it to ``FILE``;
        SnapshotDamaged (and no file) when they do not match."""
        assert self._file is not None, "the snapshot is finished"
        computed = ops.digest_hex(self._total)
        if computed != self.header["digest"] or self._entries != self.header["keys"]:
            self.abandon()
            raise SnapshotDamaged(f"the copy received does not match the replica's snapshot ({self._entries} "
                                  f"entries with digest {computed[:12]}, not {self.header['keys']} with "
                                  f"{self.header['digest'][:12]}); nothing was saved: try again")
        self._file.flush()
        os.fsync(self._file.fileno())
        size = self._file.tell()
        self._file.close()
        self._file = None
        os.replace(self._temporary, self.path)
        _sync_directory(self.path.parent)
        return SnapshotInfo(str(self.path), self.header["replica"], self.header["taken_at"], self.header["keys"],
                            self.header["digest"], self._entries, computed, size)

    def abandon(self) -> None:
        """Give up: remove ``FILE.tmp`` (``FILE`` is left as it was)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        try:
            self._temporary.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> "SnapshotWriter":
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        if self._file is not None:
            self.abandon()


def _sync_directory(directory: Path) -> None:
    """Force a rename in ``directory`` to disk (where the system allows it)."""
    try:
        descriptor = os.open(directory or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _damaged(path: str | Path, what: str) -> SnapshotDamaged:
    return SnapshotDamaged(f"{path} is not a usable rmi_kv snapshot: {what}; save a new snapshot, or use "
                           f"another copy")


def _check_entry(entry: Any, last_key: Optional[str], line: int, path: str | Path = "the snapshot") -> tuple:
    if (not isinstance(entry, list) or len(entry) != 3 or not isinstance(entry[0], str) or not entry[0]
            or not isinstance(entry[1], str) or isinstance(entry[2], bool) or not isinstance(entry[2], int)
            or entry[2] < 1):
        raise _damaged(path, f"line {line} is not an entry [key, value, version]")
    if last_key is not None and not entry[0] > last_key:
        raise _damaged(path, f"line {line}: the keys are not in order")
    return entry[0], entry[1], entry[2]


def _read_header(path: str | Path, stream: TextIO) -> dict:
    try:
        header = json.loads(stream.readline())
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _damaged(path, "its first line is not an rmi_kv snapshot header")
    if header.get("version") != VERSION:
        raise _damaged(path, f"it is of format version {header.get('version')!r}; this rmi_kv reads version "
                             f"{VERSION}")
    missing = [name for name in _HEADER_FIELDS if name not in header]
    if missing:
        raise _damaged(path, f"its header lacks {', '.join(missing)}")
    if (not isinstance(header["replica"], str) or isinstance(header["keys"], bool)
            or not isinstance(header["keys"], int) or header["keys"] < 0
            or not isinstance(header["taken_at"], (int, float)) or not isinstance(header["digest"], str)
            or len(header["digest"]) != 64):
        raise _damaged(path, "its header is malformed")
    return header


def _entries(path: str | Path, stream: TextIO) -> Iterator[tuple[str, str, int]]:
    last_key: Optional[str] = None
    for line, text in enumerate(stream, 2):
        try:
            entry = json.loads(text)
        except ValueError:
            raise _damaged(path, f"line {line} is not JSON (a damaged or cut file)") from None
        key, value, version = _check_entry(entry, last_key, line, path)
        last_key = key
        yield key, value, version


def _open(path: str | Path) -> TextIO:
    try:
        return open(path, encoding="utf-8", newline="\n")
    except OSError as error:
        raise SnapshotDamaged(f"cannot read {path}: {error.strerror}; check the path") from None


def inspect(path: str | Path) -> SnapshotInfo:
    """Read the whole file: its header, and the entries' count and digest recomputed
    (SnapshotDamaged when it is not a well-formed snapshot)."""
    with _open(path) as stream:
        try:
            header = _read_header(path, stream)
            total = count = 0
            for key, value, version in _entries(path, stream):
                total += ops.entry_hash(key, value, version)
                count += 1
        except UnicodeDecodeError:
            raise _damaged(path, "it is not UTF-8 text") from None
    return SnapshotInfo(str(path), header["replica"], float(header["taken_at"]), header["keys"], header["digest"],
                        count, ops.digest_hex(total), os.path.getsize(path))


def check(path: str | Path) -> SnapshotInfo:
    """``inspect``, and SnapshotDamaged unless the entries match the header."""
    info = inspect(path)
    if not info.ok:
        raise _damaged(path, f"its {info.entries} entries have digest {info.computed_digest[:12]}, not the "
                             f"{info.keys} entries with digest {info.digest[:12]} its header gives")
    return info


def entries(path: str | Path) -> Iterator[tuple[str, str, int]]:
    """The entries (key, value, version) in key order, each checked as it is read."""
    with _open(path) as stream:
        try:
            _read_header(path, stream)
            yield from _entries(path, stream)
        except UnicodeDecodeError:
            raise _damaged(path, "it is not UTF-8 text") from None
