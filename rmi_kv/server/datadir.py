"""A replica's data directory: one process at a time, and setting old data aside.

The lock is an OS lock (``flock``) on a file in the directory, held for as
long as the replica runs: it dies with the process, so a ``kill -9`` never
leaves a stale lock behind. The file also names the PID that holds it, for
the message a second process prints.
"""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Optional

from rmi_kv.errors import AlreadyRunning

DATABASE_NAME = "rmi_kv.sqlite3"
LOCK_NAME = "rmi_kv.lock"


class DataDirectoryLock:
    """An exclusive lock on a data directory, taken at once or refused."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / LOCK_NAME
        self._fd: Optional[int] = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder()
            os.close(self._fd)
            self._fd = None
            raise AlreadyRunning(
                f"data directory {self.directory} is in use by another replica process "
                f"(PID {holder or 'unknown'}); stop that one first, or give this one another --data-dir",
                directory=str(self.directory), pid=holder) from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())
        os.fsync(self._fd)

    def _holder(self) -> Optional[int]:
        try:
            text = os.pread(self._fd, 32, 0).decode("ascii", "replace").strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def release(self) -> None:
        """Give the directory up (a clean stop); the process's end does the same."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def set_aside(database: Path, reason: str) -> Path:
    """Keep the database files (and their write-ahead log) renamed with
    ``reason`` and the time, so the replica starts from nothing; returns the
    new name of the database file. Nothing is deleted."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = Path(f"{database}.{reason}-{stamp}")
    serial = 1
    while any(Path(f"{target}{suffix}").exists() for suffix in ("", "-wal", "-shm")):
        serial += 1
        target = Path(f"{database}.{reason}-{stamp}-{serial}")
    for suffix in ("", "-wal", "-shm"):
        path = Path(str(database) + suffix)
        if path.exists():
            path.rename(Path(f"{target}{suffix}"))
    return target
