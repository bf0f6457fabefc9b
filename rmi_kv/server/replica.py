"""The replica process: storage, recovery at start, the Pyro5 daemon,
catch-up, background maintenance and a clean shutdown."""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Mapping, Optional

from rmi_kv.config import Settings
from rmi_kv.core import validation
from rmi_kv.core.changes import ChangeFeed
from rmi_kv.core.coordinator import Coordinator
from rmi_kv.core.epochs import majority
from rmi_kv.core.failover import Failover
from rmi_kv.core.failpoints import NO_FAILPOINTS, Failpoints
from rmi_kv.core.locks import LockTable
from rmi_kv.core.participant import Participant
from rmi_kv.core.recovery import confirm_decisions, resolve_in_doubt
from rmi_kv.errors import AlreadyRunning, NameServerUnavailable, RmiKvError
from rmi_kv.server.admin import claim_name, clear_removed
from rmi_kv.server.catchup import CatchUp
from rmi_kv.server.datadir import DATABASE_NAME, DataDirectoryLock, set_aside
from rmi_kv.server.integrity import RESYNC_REFUSAL, IntegrityKeeper, open_checked
from rmi_kv.server import restore as restoring
from rmi_kv.core.snapshot_sessions import SnapshotSessions
from rmi_kv.wire.pyro import configure_pyro
from rmi_kv.wire.hardening import ConnectionGuard, GuardedDaemon, refuse_unsafe_messages
from rmi_kv.wire.naming import object_name
from rmi_kv.wire.peers import Membership, PeerCalls, PeerHandle
from rmi_kv.wire.servant import KeyValue
from rmi_kv.wire.tls import MEMBER, configure_tls

log = logging.getLogger(__name__)

#: how long finished transactions' outcomes are kept for late messages and peers
OUTCOME_RETENTION = 600.0
#: set in the environment of a replica process started again after its file was found damaged: if
#: its start-up check found nothing and the damage is seen again, it waits for an operator (no loop)
RESTARTED_FOR_DAMAGE = "RMI_KV_RESTARTED_FOR_DAMAGE"


class ReplicaServer:
    """The replica process: storage, recovery, the Pyro5 daemon, maintenance."""

    def __init__(self, name: str, data_dir: str | Path, ns_host: str, ns_port: int, *,
                 host: str = "127.0.0.1", port: int = 0, settings: Settings = Settings(),
                 failpoints: Failpoints = NO_FAILPOINTS, advertise: Optional[tuple[str, int]] = None,
                 tls_dir: Optional[str] = None, restore: Optional[str | Path] = None) -> None:
        """``advertise``: the (host, port) others dial, when not the bound one (port 0: the bound port);
        ``restore``: a snapshot file to start from (a replica of a new cluster, ``rmi_kv.server.restore``)."""
        self.name = validation.check_name(name)
        self.settings = settings
        configure_pyro(server=True, limits=settings.limits, max_connections=settings.max_connections,
                       idle_timeout=settings.timeouts.idle_connection)
        refuse_unsafe_messages()
        if tls_dir:
            configure_tls(tls_dir, MEMBER)
        self.ns_host, self.ns_port = ns_host, ns_port
        self.data_lock = DataDirectoryLock(data_dir)
        try:
            claim = claim_name(name, ns_host, ns_port)
            if claim.running_at is not None:
                raise AlreadyRunning(f"a replica named {name} is already running at {claim.running_at}; "
                                     f"stop it first, or start this one under another --name",
                                     replica=name, uri=claim.running_at)
            database = Path(data_dir) / DATABASE_NAME
            self.rejoining = claim.removed
            if self.rejoining:
                target = set_aside(database, "removed")
                log.warning("this replica was removed from the cluster; its old data is out of date and was set "
                            "aside (%s): starting over and catching up", target)
            self.storage = open_checked(database, durable=settings.durable)
        except BaseException:
            self.data_lock.release()
            raise
        self.restore_file = restore
        try:
            self.restore_info = restoring.check_restorable(self.storage, restore, data_dir) if restore else None
        except BaseException:
            self.storage.close()
            self.data_lock.release()
            raise
        self.membership = Membership(name, ns_host, ns_port, store=self.storage,
                                     call_timeout=settings.timeouts.vote, limits=settings.limits,
                                     company=lambda: self.coordinator.in_progress())
        self.failpoints = failpoints
        nathost, natport = advertise if advertise else (None, None)
        guard = ConnectionGuard(limit=settings.max_connections, handshake_timeout=settings.timeouts.handshake,
                                idle_timeout=settings.timeouts.idle_connection)
        self.daemon = GuardedDaemon(host=host, port=port, nathost=nathost, natport=natport, guard=guard)
        timeouts = settings.timeouts
        self.failover = Failover(name, store=self.storage, configured=self.membership.names,
                                 complete=lambda: not self.storage.catching_up, lease=settings.lease,
                                 enabled=settings.failover, reset_data=self._empty_for_copy,
                                 catch_up=self._start_catch_up, left_out=lambda: self.coordinator.defer(),
                                 failpoints=failpoints)
        on = settings.failover
        #: the changes committed here, for watchers
        self.changes = ChangeFeed()
        self.participant = Participant(name, self.storage, locks=LockTable(), failpoints=failpoints,
                                       lock_wait=timeouts.lock_wait, read_wait=timeouts.read_wait,
                                       members=self.failover.members,
                                       admits=self.failover.transaction_refusal if on else None,
                                       commit_gate=self.failover.commit_refusal if on else None,
                                       on_commit=self.changes.append_commit)
        self.failover.settling = self.participant
        self.coordinator = Coordinator(name, self.storage, failpoints=failpoints, vote_timeout=timeouts.vote,
                                       decision_timeout=timeouts.decision, conflict_retries=settings.conflict_retries,
                                       conflict_backoff=settings.conflict_backoff, early_reply=settings.early_reply,
                                       epoch=(lambda: self.failover.epoch.number) if on else (lambda: None),
                                       quorum=(lambda: majority(self.membership.names())) if on else (lambda: None),
                                       defer_to_epoch=on, company_left=self.membership.links.company_changed)
        self._peer_calls = PeerCalls(self.membership)
        self.integrity = IntegrityKeeper(name, self.storage, self.participant, self.coordinator, self.membership,
                                         self.failover, self._peer_calls, verify_every=settings.verify_every,
                                         antientropy_every=settings.antientropy_every, refuse=self._integrity_refusal,
                                         restart=None if os.environ.get(RESTARTED_FOR_DAMAGE) else self._restart)
        self.kv = KeyValue(name, storage=self.storage, participant=self.participant, coordinator=self.coordinator,
                           membership=self.membership, failover=self.failover, settings=settings,
                           failpoints=failpoints, integrity=self.integrity, changes=self.changes,
                           snapshots=SnapshotSessions(name, self.storage.open_snapshot),
                           connections=lambda: {"open": guard.count(), "limit": guard.limit,
                                                "evicted": guard.evicted, "denied": guard.denied})
        self.uri = str(self.daemon.register(self.kv, objectId=object_name(name)))
        self._stopping = threading.Event()
        self._stop_requested = threading.Event()
        #: the database file was found damaged while running: start the process again once stopped
        self.restart_requested = False
        self._maintenance = threading.Thread(target=self._maintain, name=f"{name}-maintenance", daemon=True)
        self._epoch_keeper = threading.Thread(target=self._keep_epoch, name=f"{name}-epoch", daemon=True)
        self._copier: Optional[threading.Thread] = None
        self._copy_wanted = False
        self._copier_guard = threading.Lock()

    # ------------------------------------------------------------ start-up
    def start(self) -> None:
        """Recover, register in the name server, catch up if the data is new, serve."""
        in_doubt = self.participant.recover()
        unacknowledged = self.coordinator.recover()
        if in_doubt or unacknowledged:
            log.info("recovery: %d in doubt, %d commits not acknowledged by all", len(in_doubt), len(unacknowledged))
        self._daemon_thread = threading.Thread(target=self._serve, name=f"{self.name}-daemon", daemon=True)
        self._daemon_thread.start()
        members = self.membership.refresh()
        if self.restore_info is not None:
            restoring.check_peers(self.name, self.restore_info, self.membership, members)
            restoring.install(self.storage, self.restore_file, self.restore_info)
        if self.storage.created_now:
            peers = sorted(set(members) - {self.name})
            if peers:
                log.info("new data directory; other members (%s): copying their committed data before "
                         "serving", ", ".join(peers))
            self.storage.set_catching_up(bool(peers))
        if self.storage.catching_up:
            self.kv.stop_serving("catching up: copying the committed data from a peer")
        self._recover_once(initial=True)
        self.membership.register(self.uri)
        if self.rejoining:
            clear_removed(self.ns_host, self.ns_port, self.name)
        self._announce(self.membership.refresh())
        if self.settings.failover:
            self._epoch_keeper.start()
        if self.storage.catching_up:
            self._start_catch_up()
            copier = self._copier
            if copier is not None:
                copier.join()
        self._maintenance.start()
        if self.settings.antientropy_every > 0 and not self.storage.catching_up:
            self._compare_before_serving()
        self.integrity.start()
        if self.settings.failover:
            self._wait_for_lease(10 * self.settings.lease)
        log.info("%s serving at %s", self.name, self.uri)

    def _compare_before_serving(self) -> None:
        """Compare digests with the members once before serving: data that lost
        writes its disk had acknowledged is re-synced now if nothing is in flight
        (anti-entropy finds it later otherwise)."""
        try:
            verdict = self.integrity.compare_round()
        except Exception as error:  # the background rounds try again
            log.info("could not compare digests before serving: %s", error)
            return
        log.info("digest compared with the members before serving: %s", verdict.state)

    # ------------------------------------------------------------- failover
    def _keep_epoch(self) -> None:
        """Renew the lease, follow and change epochs (``core.failover``), every quarter lease."""
        period = self.settings.lease / 4
        next_at = time.monotonic()
        while True:
            next_at += period  # a fixed rate: a slow round does not push the renewals back
            if self._stopping.wait(max(0.0, next_at - time.monotonic())):
                return
            try:
                self.failover.tick(self._peer_calls)
            except Exception:  # keep going; the next tick tries again
                log.exception("epoch round failed")
            next_at = max(next_at, time.monotonic() - period)

    def _wait_for_lease(self, patience: float) -> None:
        """Give a starting replica the moment it takes to be a serving member of its epoch."""
        deadline = time.monotonic() + patience
        while self.failover.read_refusal() is not None and time.monotonic() < deadline:
            if self._stop_requested.wait(0.05):
                return
        refusal = self.failover.read_refusal()
        if refusal is not None:
            log.info("not serving reads yet: %s", refusal)

    def _empty_for_copy(self) -> None:
        """A newcomer to an epoch: refuse clients, empty the data, catch up from now on."""
        self.kv.stop_serving("catching up: copying the data of the current epoch from a member")
        self.participant.start_catch_up()
        self.changes.reset()  # what watchers saw is gone with the data: their cursors say so

    def _start_catch_up(self) -> None:
        """Copy the data from a member in the background (once at a time; again when asked meanwhile)."""
        with self._copier_guard:
            self._copy_wanted = True
            if self._copier is None or not self._copier.is_alive():
                self._copier = threading.Thread(target=self._copy, name=f"{self.name}-catch-up", daemon=True)
                self._copier.start()

    def _copy(self) -> None:
        failover = self.failover
        while True:
            with self._copier_guard:
                if not self._copy_wanted or self._stop_requested.is_set():
                    return
                self._copy_wanted = False
            catch_up = CatchUp(self.name, self.storage, self.participant, self.membership, self.failpoints,
                               sources=failover.members,
                               epoch=(lambda: failover.epoch.number) if failover.enabled else (lambda: None),
                               generation=lambda: failover.generation)
            if catch_up.run(self._stop_requested):
                self.integrity.rebuilt(catch_up.source)
                self.kv.serve()

    def _restart(self) -> None:
        """Stop, and have the process start again (``rmi_kv.server.main``): its start-up check rebuilds the data."""
        self.restart_requested = True
        self.request_stop()

    def _integrity_refusal(self, reason: Optional[str], transactions_too: bool) -> None:
        """Refuse clients (and transactions) while the data is damaged; serve again once re-synced.
        A refusal for another reason (catching up, shutting down) stays as it is."""
        if reason is not None:
            if self.kv.refusal in (None, RESYNC_REFUSAL) or transactions_too:
                self.kv.stop_serving(reason, transactions_too=transactions_too)
        elif self.kv.refusal == RESYNC_REFUSAL:
            self.kv.serve()

    def _announce(self, members: Mapping[str, Optional[str]]) -> None:
        """Tell every other member we are here (so none leaves us out of a
        write), and take in the members they know that we do not."""
        for name in sorted(members):
            if name != self.name:
                try:
                    view = PeerHandle(name, self.membership).call("announce", self.name, self.uri, timeout=1.0)
                except RmiKvError as error:
                    log.info("could not announce to %s: %s", name, error)
                    continue
                if isinstance(view, dict) and isinstance(view.get("members"), dict):
                    removed = set(self.membership.removed())
                    self.membership.learn({member: uri for member, uri in view["members"].items()
                                           if isinstance(member, str) and member not in removed
                                           and (uri is None or isinstance(uri, str))})

    def _serve(self) -> None:
        self.daemon.requestLoop(loopCondition=lambda: not self._stopping.is_set())

    def _recover_once(self, initial: bool = False) -> None:
        participant, coordinator = self.participant, self.coordinator
        horizon = time.time() - (self.settings.timeouts.vote + self.settings.timeouts.decision)
        prepared = participant.prepared()
        doubtful = [txid for txid, record in prepared.items() if initial or record.created < horizon]
        if doubtful:
            remaining = resolve_in_doubt(participant, coordinator, self.kv.handle_for, doubtful, self.failpoints)
            if remaining:
                log.info("still in doubt: %s", ", ".join(remaining))
        if coordinator.unconfirmed():
            confirm_decisions(coordinator, self.kv.handle_for, in_epoch=self.failover.read_refusal() is None)
        if coordinator.pending():
            handles = {name: self.kv.handle_for(name) for name in self.membership.names()}
            handles[self.name] = self.kv.handle_for(self.name)
            coordinator.resend_commits({name: handle for name, handle in handles.items() if handle is not None},
                                       min_age=0.0 if initial else self.settings.timeouts.decision)
        coordinator.forget_acknowledged()

    def _maintain(self) -> None:
        timeouts = self.settings.timeouts
        next_refresh = next_prune = 0.0
        while not self._stopping.wait(timeouts.recovery_interval):
            now = time.monotonic()
            try:
                if now >= next_refresh:
                    next_refresh = now + timeouts.membership_refresh
                    self.membership.refresh()
            except NameServerUnavailable as error:
                log.debug("member refresh: %s", error)
            try:
                self.kv.snapshots.expire()
                self._recover_once()
                if now >= next_prune:
                    next_prune = now + 10.0
                    self.storage.forget_outcomes(time.time() - OUTCOME_RETENTION)
            except Exception:  # keep maintaining; the next round tries again
                log.exception("maintenance round failed")

    # ----------------------------------------------------------- shut-down
    def wait(self) -> None:
        """Block until a stop is requested (from a signal handler or another thread)."""
        while not self._stop_requested.wait(0.5):
            pass

    def request_stop(self) -> None:
        self._stop_requested.set()

    def stop(self, grace: float = 5.0) -> None:
        """No new requests; let in-flight writes finish; close storage."""
        self.kv.stop_serving("shutting down", transactions_too=True)
        if not self.kv.wait_idle(grace):
            log.warning("shutdown: writes still in flight after %.1f s", grace)
        self._stopping.set()
        self.integrity.stop()
        try:
            self.failover.leave(self._peer_calls)
        except Exception as error:  # the others wait its lease out instead
            log.info("could not tell the others this replica leaves: %s", error)
        for thread in (self._maintenance, self._epoch_keeper):
            if thread.is_alive():
                thread.join(timeout=grace)
        self.daemon.guard.close_all()
        self.daemon.shutdown()
        if self._daemon_thread.is_alive():
            self._daemon_thread.join(timeout=grace)
        self.coordinator.close()
        self._peer_calls.close()
        self.membership.close()
        self.kv.snapshots.close_all()
        self.storage.close()
        self.data_lock.release()
        log.info("%s stopped", self.name)
