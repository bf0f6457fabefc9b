"""Catch-up: a replica with new (or set-aside) data copies the committed data
from a member before it serves clients.

While it copies, it takes part in every write: the commits that reach it are
buffered and applied once the copy is complete (applying a transaction twice
is harmless: an entry names the transaction that wrote it last). A member
hands out a chunk only once no transaction there leaves the copier out, so
the copy misses nothing the copier was not part of.

With failover on, the copier is a newcomer to an epoch: it copies from a
member of that epoch with complete data (the member checks), and starts
over when its data is emptied again meanwhile (a later epoch took it in
once more). Whether nobody holds data is only asked in epoch 0.
"""
from __future__ import annotations

import logging
import random
import threading

from typing import Callable, Iterable, Optional

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
                 failpoints: Failpoints, *, sources: Optional[Callable[[], Iterable[str]]] = None,
                 epoch: Callable[[], Optional[int]] = lambda: None,
                 generation: Callable[[], int] = lambda: 0) -> None:
        """``sources``: whom to copy from (default: every member); ``epoch``: the
        epoch the copy is for (None: failover off); ``generation`` changes
        whenever the data is emptied for a new copy."""
        self.name = name
        self.storage = storage
        self.participant = participant
        self.membership = membership
        self.failpoints = failpoints
        self.sources = sources or membership.names
        self.epoch = epoch
        self.generation = generation
        #: the member the data was copied from, once done (None: nothing to copy)
        self.source: Optional[str] = None

    def run(self, stop: threading.Event) -> bool:
        """Copy from a member with complete data (or find that nobody holds
        data); True when done, False when ``stop`` was set first."""
        while not stop.is_set():
            if not self.storage.catching_up:
                return True
            started = self.generation()
            peers = [name for name in self.sources() if name != self.name]
            random.shuffle(peers)
            for peer in peers:
                try:
                    copied = self._copy_from(peer, started)
                except RmiKvError as error:
                    log.info("catch-up from %s failed: %s", peer, error)
                    continue
                applied = self.participant.finish_catch_up(still=lambda: self.generation() == started)
                if applied is None:
                    log.info("catch-up from %s: the data was emptied again meanwhile; copying again", peer)
                    break
                log.info("caught up from %s: %d entries copied, %d buffered writes applied", peer, copied, applied)
                self.source = peer
                return True
            if not self.epoch() and self._nobody_has_data(peers):
                self.participant.finish_catch_up()
                log.info("every member is new and holds nothing: nothing to copy")
                return True
            stop.wait(RETRY_PAUSE)
            try:
                self.membership.refresh()
            except NameServerUnavailable as error:
                log.info("catch-up: %s", error)
        return False

    def _copy_from(self, peer: str, generation: int) -> int:
        handle = PeerHandle(peer, self.membership)
        after_key, copied = None, 0
        epoch = self.epoch()
        while self.generation() == generation:
            chunk = handle.call("snapshotChunk", self.name, after_key, CHUNK_ENTRIES,
                                *(() if epoch is None else (epoch,)), timeout=15.0)
            entries = [tuple(entry) for entry in chunk["entries"]]
            self.storage.install_entries(entries)
            copied += len(entries)
            self.failpoints.hit("recovery.catch_up_chunk")
            if not chunk["more"] or not entries:
                return copied
            after_key = entries[-1][0]
        return copied  # emptied again meanwhile: finish_catch_up refuses it

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
