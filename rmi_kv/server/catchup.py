"""Catch-up: a replica with new (or set-aside) data copies the committed data
from a member before it serves clients.

While it copies, it takes part in every write: the commits that reach it are
buffered and applied once the copy is complete (applying a transaction twice
is harmless: an entry names the transaction that wrote it last). A member
hands out a chunk only once no transaction there leaves the copier out, so
the copy misses nothing the copier was not part of.
"""
from __future__ import annotations

import logging
import random
import threading

from rmi_kv.core.failpoints import Failpoints
from rmi_kv.core.participant import Participant
from rmi_kv.errors import NameServerUnavailable, RmiKvError
from rmi_kv.storage.interfaces import ReplicaStorage
from rmi_kv.wire.peers import Membership, PeerHandle

log = logging.getLogger(__name__)

#: entries asked for in one snapshot chunk (the member sends about 1 MiB at most)
CHUNK_ENTRIES = 2000
#: between two rounds over the members while none can hand out its data
RETRY_PAUSE = 0.1


class CatchUp:
    """Copies the committed data of one member into this replica's storage."""

    def __init__(self, name: str, storage: ReplicaStorage, participant: Participant, membership: Membership,
                 failpoints: Failpoints) -> None:
        self.name = name
        self.storage = storage
        self.participant = participant
        self.membership = membership
        self.failpoints = failpoints

    def run(self, stop: threading.Event) -> bool:
        """Copy from a serving member (or find that nobody holds data); True
        when done, False when ``stop`` was set first."""
        while not stop.is_set():
            peers = [name for name in self.membership.names() if name != self.name]
            random.shuffle(peers)
            for peer in peers:
                try:
                    copied = self._copy_from(peer)
                except RmiKvError as error:
                    log.info("catch-up from %s failed: %s", peer, error)
                    continue
                applied = self.participant.finish_catch_up()
                log.info("caught up from %s: %d entries copied, %d buffered writes applied", peer, copied, applied)
                return True
            if self._nobody_has_data(peers):
                self.participant.finish_catch_up()
                log.info("every member is new and holds nothing: nothing to copy")
                return True
            stop.wait(RETRY_PAUSE)
            try:
                self.membership.refresh()
            except NameServerUnavailable as error:
                log.info("catch-up: %s", error)
        return False

    def _copy_from(self, peer: str) -> int:
        handle = PeerHandle(peer, self.membership)
        after_key, copied = None, 0
        while True:
            chunk = handle.call("snapshotChunk", self.name, after_key, CHUNK_ENTRIES, timeout=15.0)
            entries = [tuple(entry) for entry in chunk["entries"]]
            self.storage.install_entries(entries)
            copied += len(entries)
            self.failpoints.hit("recovery.catch_up_chunk")
            if not chunk["more"] or not entries:
                return copied
            after_key = entries[-1][0]

    def _nobody_has_data(self, peers: list[str]) -> bool:
        """True when every other member answers, is new and catching up too, and
        holds nothing: no write can have committed anywhere (a catching-up
        replica takes none from clients), so there is nothing to copy."""
        for peer in peers:
            try:
                status = PeerHandle(peer, self.membership).call("status", timeout=2.0)
            except RmiKvError:
                return False
            if not status.get("catching_up") or status.get("keys") or status.get("committed"):
                return False
        return True
