"""``run_server.py --restore FILE``: a replica of a new cluster starts from a backup.

Only into a new, empty data directory, and only from a file whose entries
match its digest (``rmi_kv.storage.snapshot_file.check``). The entries are
installed in one forced transaction, each as written by ``RESTORED_TXID`` (no
real transaction id has that form, so nothing mistakes it for one), and the
data then serves: a restored replica copies from nobody. Replicas started
later with empty data directories copy from it, as from any member.

Before it installs anything it asks the members already registered: one that
serves other data (it started first with an empty directory, or took writes
meanwhile) would disagree with the restored one for good, so the restore is
refused, with what to do.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

from rmi_kv.errors import InvalidRequest, RmiKvError
from rmi_kv.storage import snapshot_file
from rmi_kv.storage.snapshot_file import SnapshotInfo
from rmi_kv.storage.sqlite import Storage
from rmi_kv.wire.peers import Membership, PeerHandle

log = logging.getLogger(__name__)

#: the last writer a restored entry names (not of the ``rmi_kv.core.txid`` format: it clashes with no real one)
RESTORED_TXID = "restored-from-snapshot"


def check_restorable(storage: Storage, path: str | Path, data_dir: str | Path) -> SnapshotInfo:
    """The file's header once its entries are checked; RmiKvError when the data directory is not new
    and empty, or the file is not a sound snapshot."""
    if not storage.created_now or storage.live_keys or storage.committed_count:
        raise InvalidRequest(f"the data directory {data_dir} already holds data; --restore starts a replica of a "
                             f"new cluster: give it a new, empty --data-dir")
    return snapshot_file.check(path)


def check_peers(name: str, info: SnapshotInfo, membership: Membership, peers: Iterable[str]) -> None:
    """RmiKvError when a registered member serves data other than the snapshot's."""
    for peer in sorted(peers):
        if peer == name:
            continue
        try:
            status = PeerHandle(peer, membership).call("status", timeout=2.0)
        except RmiKvError as error:
            log.info("restore: %s does not answer (%s); not comparing with it", peer, error)
            continue
        if not isinstance(status, dict) or status.get("catching_up") or status.get("digest") == info.digest:
            continue
        raise RmiKvError(f"{peer} already serves other data ({status.get('keys')} keys, digest "
                         f"{str(status.get('digest'))[:12]}, not the snapshot's {info.keys} keys with digest "
                         f"{info.digest[:12]}); restore into a new cluster: start the restored replica first, "
                         f"then the others with new, empty data directories (or give each --restore)",
                         replica=name)


def install(storage: Storage, path: str | Path, info: SnapshotInfo) -> None:
    """Install the file's entries and check that the data now has the file's digest."""
    try:
        storage.restore(snapshot_file.entries(path), RESTORED_TXID, info.digest)
    except ValueError as error:  # the file changed since it was checked: nothing was kept
        raise RmiKvError(f"{path} changed while it was restored ({error}); nothing was restored: try again") from None
    if storage.live_keys != info.keys:
        raise RmiKvError(f"the restored data holds {storage.live_keys} keys, not the snapshot's {info.keys}; "
                         f"start again with a new data directory")
    log.info("restored %d keys (digest %s) from %s, taken from %s", info.keys, info.digest[:12], path, info.replica)
