"""``snapshot save FILE`` and ``snapshot status FILE``: backups of a replica's committed data.

``save`` opens a consistent read on a replica (the one in use, or any:
``KeyValue.snapshotOpen``), copies its live entries page by page into
``FILE.tmp`` while writes go on, recomputes the digest from what it
received and renames the file to ``FILE`` only when that digest is the
replica's (``rmi_kv.storage.snapshot_file``). ``status`` reads a file without
a cluster: keys, size, digest, and whether the digest checks out.
``run_server.py --restore FILE`` starts a replica of a new cluster from it.
"""
from __future__ import annotations

import datetime
from typing import Any

from rich.text import Text

from rmi_kv.cli.commands import Command
from rmi_kv.errors import InvalidRequest, RmiKvError
from rmi_kv.storage import snapshot_file
from rmi_kv.storage.snapshot_file import SnapshotWriter

#: entries asked for in one page (a replica sends about 512 KiB of keys and values at most)
PAGE_ENTRIES = 1000


def is_local(command: Command) -> bool:
    """Whether ``command`` reads a file only, and needs no replica (``snapshot status``)."""
    return command.name == "snapshot" and bool(command.args) and command.args[0] == "status"


def run_snapshot(kv: Any, command: Command, trace: bool) -> tuple[dict, None]:
    """The runner of ``snapshot save|status FILE`` (``rmi_kv.cli.execute``)."""
    action, path = command.args
    if action == "save":
        return {"action": "save", **save(kv, path)}, None
    return {"action": "status", **snapshot_file.check(path).as_dict()}, None


def save(kv: Any, path: str, *, page_entries: int = PAGE_ENTRIES) -> dict:
    """Copy a consistent snapshot of a replica's committed data into ``path``; what was saved."""
    opened = kv.snapshot_open()
    replica, snapshot_id = opened["replica"], opened["id"]
    try:
        with SnapshotWriter(path, replica=replica, taken_at=opened["taken_at"], keys=opened["keys"],
                            digest=opened["digest"]) as writer:
            after = None
            while True:
                page = kv.snapshot_page(replica, snapshot_id, after, page_entries)
                entries = page["entries"]
                for key, value, version in entries:
                    writer.add(key, value, version)
                if not page["more"] or not entries:
                    break
                after = entries[-1][0]
            info = writer.finish()
    except OSError as error:
        raise InvalidRequest(f"cannot write {path}: {error.strerror or error}; check the path and the free space") from None
    finally:
        try:
            kv.snapshot_close(replica, snapshot_id)
        except RmiKvError:
            pass  # the replica closes it when it stays idle
    return info.as_dict()


def taken_at_text(taken_at: float) -> str:
    """When a snapshot was taken, in local time."""
    return datetime.datetime.fromtimestamp(taken_at).strftime("%Y-%m-%d %H:%M:%S")


def snapshot_line(payload: dict) -> Text:
    """What ``snapshot save`` and ``snapshot status`` say: keys, size, digest, file."""
    facts = (f"{payload['keys']} keys, {payload['size']} bytes, digest {payload['digest']}, "
             f"taken from {payload['replica']} at {taken_at_text(payload['taken_at'])}")
    if payload["action"] == "save":
        return Text.assemble(("saved", "bold green"), f" {payload['file']}: {facts}")
    return Text.assemble(f"{payload['file']}: {facts}; ", ("the digest checks out", "green"))
