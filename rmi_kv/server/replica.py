"""One replica: the Pyro5-exposed ``KeyValue`` object and the process around it.

``KeyValue`` validates every argument and wires the participant, the
coordinator and the member list together; it holds no protocol decisions.
``ReplicaServer`` owns the daemon, recovery at start, the background
maintenance task and a clean shutdown.
"""
from __future__ import annotations

import functools
import logging
import random
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from Pyro5.api import expose

from rmi_kv import __version__

from rmi_kv.core import validation
from rmi_kv.config import Settings, configure_pyro
from rmi_kv.server.admin import claim_name, clear_removed
from rmi_kv.core.batching import decode_batch, encode_answers
from rmi_kv.core.coordinator import Coordinator
from rmi_kv.server.datadir import DATABASE_NAME, DataDirectoryLock, set_aside
from rmi_kv.errors import AlreadyRunning, InvalidRequest, NameServerUnavailable, ReplicaUnavailable, RmiKvError
from rmi_kv.core.failpoints import NO_FAILPOINTS, Failpoints
from rmi_kv.wire.hardening import ConnectionGuard, GuardedDaemon
from rmi_kv.core.locks import LockTable
from rmi_kv.core.participant import Participant
from rmi_kv.wire.peers import Membership, PeerHandle
from rmi_kv.core.recovery import resolve_in_doubt
from rmi_kv.storage.sqlite import Storage
from rmi_kv.wire.tls import MEMBER, configure_tls, require_member

log = logging.getLogger(__name__)

#: how long finished transactions' outcomes are kept for late messages and peers
OUTCOME_RETENTION = 600.0
#: about how much committed data one catch-up call carries
CHUNK_BYTES = 1024 * 1024


def remote_boundary(method: Callable) -> Callable:
    """Let rmi_kv errors through; turn anything else into a clear RmiKvError.

    Nothing from Pyro5's own CommunicationError family may escape a remote
    method (Pyro5 would drop the caller's connection without an answer).
    """

    @functools.wraps(method)
    def wrapper(self: "KeyValue", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except RmiKvError:
            raise
        except Exception as error:
            raise as_rmi_kv_error(error, self.name, method.__name__) from None

    return wrapper


def as_rmi_kv_error(error: Exception, replica: str, what: str) -> RmiKvError:
    """``error`` as the project's own class: a TypeError is a bad call, anything
    else unexpected an internal error of ``replica`` (logged with its traceback)."""
    if isinstance(error, RmiKvError):
        return error
    if isinstance(error, TypeError):
        return InvalidRequest(f"bad call of {what}: {error}")
    log.error("%s failed", what, exc_info=error)
    return RmiKvError(f"{replica}: internal error in {what}: {type(error).__name__}: {error}", replica=replica)


#: the protocol messages a batch may carry, and how many arguments each takes
PROTOCOL_MESSAGES = {"canCommit": 4, "doCommit": 1, "doAbort": 1}


def _protocol_message(message: Any) -> tuple[str, tuple]:
    """(name, arguments) of one message of a batch, or InvalidRequest."""
    if not isinstance(message, (list, tuple)) or not message or message[0] not in PROTOCOL_MESSAGES:
        raise InvalidRequest(f"a batch message must start with one of {', '.join(PROTOCOL_MESSAGES)}")
    if len(message) - 1 != PROTOCOL_MESSAGES[message[0]]:
        raise InvalidRequest(f"{message[0]} takes {PROTOCOL_MESSAGES[message[0]]} argument(s), "
                             f"not {len(message) - 1}")
    return message[0], tuple(message[1:])


def _answer_of(function: Callable, *args: Any) -> Any:
    """``function(*args)``, or the exception it raised (one message's answer)."""
    try:
        return function(*args)
    except Exception as error:
        return error


class LocalHandle:
    """The replica's own participant, called directly by its coordinator."""

    def __init__(self, participant: Participant) -> None:
        self.participant = participant

    def canCommit(self, txid: str, writes: dict, coordinator: str, participants: list) -> bool:
        return self.participant.can_commit(txid, writes, coordinator, participants)

    def doCommit(self, txid: str) -> bool:
        return self.participant.do_commit(txid)

    def commitWithDecision(self, txid: str, participants: list) -> bool:
        """Force the coordinator's COMMIT record and apply locally, in one write."""
        return self.participant.do_commit(txid, decision=participants)

    def doAbort(self, txid: str) -> bool:
        return self.participant.do_abort(txid)


@expose
class KeyValue:
    """The remote key-value object of one replica (participant and coordinator)."""

    def __init__(self, name: str, storage: Storage, membership: Membership,
                 settings: Settings = Settings(), failpoints: Failpoints = NO_FAILPOINTS) -> None:
        self.name = name
        self.settings = settings
        self.limits = settings.limits
        self.storage = storage
        self.membership = membership
        self.failpoints = failpoints
        self.participant = Participant(name, storage, LockTable(), failpoints,
                                       lock_wait=settings.timeouts.lock_wait,
                                       read_wait=settings.timeouts.read_wait,
                                       members=membership.names)
        self.coordinator = Coordinator(name, storage, failpoints,
                                       vote_timeout=settings.timeouts.vote,
                                       decision_timeout=settings.timeouts.decision,
                                       conflict_retries=settings.conflict_retries,
                                       conflict_backoff=settings.conflict_backoff,
                                       early_reply=settings.early_reply)
        self._local = LocalHandle(self.participant)
        self.started = time.time()
        #: why client requests are refused now (None: serving)
        self.refusal: Optional[str] = None
        self._inflight = 0
        self._inflight_changed = threading.Condition()
        #: what the connection guard reports (set by the server that owns the daemon)
        self.connections: Callable[[], dict] = dict

    # ------------------------------------------------------------ plumbing
    def _serving(self) -> None:
        if self.refusal is not None:
            # ``starting``: it will serve in a moment; a client may wait for it or ask another
            raise ReplicaUnavailable(f"{self.name} is not serving: {self.refusal}", replica=self.name,
                                     starting=self.storage.catching_up)

    def _handles(self, reload_members: bool = False) -> dict[str, Any]:
        if reload_members:
            try:
                self.membership.refresh()
            except NameServerUnavailable as error:
                log.warning("cannot reload the member list: %s", error)
        handles: dict[str, Any] = {name: PeerHandle(name, self.membership)
                                   for name in self.membership.names() if name != self.name}
        handles[self.name] = self._local
        return handles

    def handle_for(self, name: str) -> Any:
        if name == self.name:
            return self._local
        return PeerHandle(name, self.membership) if name in self.membership.members() else None

    def _write(self, writes: dict, observe=None):
        self._serving()
        with self._inflight_changed:
            self._inflight += 1
        try:
            return self.coordinator.execute(writes, self._handles, observe)
        finally:
            with self._inflight_changed:
                self._inflight -= 1
                self._inflight_changed.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no client write is in flight (for a clean shutdown)."""
        deadline = time.monotonic() + timeout
        with self._inflight_changed:
            while self._inflight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._inflight_changed.wait(remaining)
        return True

    # ---------------------------------------------------------- client API
    @remote_boundary
    def get(self, key: str) -> Optional[str]:
        """The value of ``key`` or None; waits while an undecided write holds it."""
        validation.check_key(key, self.limits)
        self._serving()
        return self.participant.read(key)

    @remote_boundary
    def put(self, key: str, value: str) -> None:
        """Set ``key`` to ``value`` on every replica (two-phase commit)."""
        validation.check_key(key, self.limits)
        validation.check_value(value, self.limits)
        self._write({key: value})

    @remote_boundary
    def delete(self, key: str) -> bool:
        """Delete ``key`` everywhere; True when it had a value."""
        validation.check_key(key, self.limits)
        self._serving()
        if self.participant.read(key) is None:
            return False  # nothing to delete: as a read, linearizable
        outcome = self._write({key: None}, observe=lambda writes: self.participant.read_own(key) is not None)
        return bool(outcome.observed)

    @remote_boundary
    def transaction(self, writes: dict) -> None:
        """Apply several puts (str) and deletes (None) atomically."""
        self._write(validation.check_writes(writes, self.limits))

    @remote_boundary
    def traced(self, writes: dict) -> dict:
        """Like ``transaction``, and return the 2PC round it caused, message by message."""
        outcome = self._write(validation.check_writes(writes, self.limits))
        return {"txid": outcome.txid, "attempts": outcome.attempts,
                "trace": [event.as_dict() for event in outcome.trace]}

    @remote_boundary
    def keys(self, prefix: str = "", limit: int = 100, after: Optional[str] = None) -> list:
        """Live keys starting with ``prefix``, sorted, at most ``limit``; with ``after`` (the
        last key of the page before), the page after it."""
        validation.check_prefix(prefix, self.limits)
        validation.check_limit(limit)
        if after is not None:
            validation.check_key(after, self.limits)
        self._serving()
        return self.participant.storage.keys(prefix, limit=limit, after=after)

    @remote_boundary
    def ping(self) -> str:
        """A no-op round trip (the benchmark's floor)."""
        return self.name

    @remote_boundary
    def status(self) -> dict:
        """Name, counts, digest, in-doubt transactions and versions of this replica."""
        return {
            "name": self.name,
            "role": "participant and coordinator",
            "early_reply": self.coordinator.early_reply,
            "version": __version__,
            "uri": self.membership.self_uri,
            "serving": self.refusal is None,
            "refusal": self.refusal,
            "catching_up": self.storage.catching_up,
            "keys": self.storage.live_keys,
            "digest": self.storage.digest,
            "in_doubt": self.participant.in_doubt(),
            "in_doubt_ages": self.participant.in_doubt_ages(),
            "committed": self.storage.committed_count,
            "aborted": self.storage.aborted_count,
            "coordinated_committed": self.coordinator.committed,
            "coordinated_aborted": self.coordinator.aborted,
            "coordinated_retries": self.coordinator.retries,
            "forced_commits": self.storage.forced_commits,
            "forced_operations": self.storage.forced_operations,
            "unacknowledged_commits": sorted(self.coordinator.pending()),
            **dict(zip(("protocol_calls", "protocol_messages"), self.membership.batch_counts())),
            "members": self.membership.names(),
            "member_uris": self.membership.members(),
            "removed_members": self.membership.removed(),
            "nameserver_reachable": self.membership.nameserver_reachable,
            "failpoints": self.failpoints.describe(),
            "connections": self.connections(),
            "uptime": round(time.time() - self.started, 3),
        }

    # ----------------------------------------------------- participant API
    @remote_boundary
    def canCommit(self, txid: str, writes: dict, coordinator: str, participants: Optional[list] = None) -> bool:
        """Phase 1 (from a coordinator): vote on ``writes``."""
        require_member("canCommit")
        return self.participant.can_commit(*self._checked_vote(txid, writes, coordinator, participants))

    def _checked_vote(self, txid: Any, writes: Any, coordinator: Any, participants: Any = None) -> tuple:
        """A canCommit's arguments, validated: (txid, writes, coordinator, participants)."""
        validation.check_txid(txid)
        validation.check_name(coordinator, "coordinator name")
        writes = validation.check_writes(writes, self.limits)
        participants = validation.check_participants(participants)
        if Coordinator.coordinator_of(txid) != coordinator:
            raise InvalidRequest(f"transaction {txid} does not belong to coordinator {coordinator}")
        if coordinator == self.name:
            raise InvalidRequest(f"{self.name} coordinates {txid} itself: its vote is never asked over the network")
        if not self.membership.knows(coordinator):
            raise InvalidRequest(f"{coordinator} is not a member: {self.name} takes no transaction from it")
        if not {self.name, coordinator} <= set(participants):
            raise InvalidRequest("canCommit needs the list of participants, with the coordinator and this replica")
        return txid, writes, coordinator, participants

    @remote_boundary
    def doCommit(self, txid: str) -> bool:
        """Phase 2: apply; the True returned is the haveCommitted acknowledgement."""
        require_member("doCommit")
        return self.participant.do_commit(validation.check_txid(txid))

    @remote_boundary
    def doAbort(self, txid: str) -> bool:
        """Phase 2: drop the prepared writes."""
        require_member("doAbort")
        return self.participant.do_abort(validation.check_txid(txid))

    @remote_boundary
    def batch(self, messages: str) -> str:
        """Several protocol messages in one call, each answered on its own.

        ``messages`` is a JSON array of ["canCommit", txid, writes,
        coordinator, participants], ["doCommit", txid] and ["doAbort", txid]
        (one string for serpent to read, and the standard library's JSON
        decoder for the rest: several times cheaper than serpent on nested
        data). The answer is a JSON array too: [true, result] or [false,
        error] per message, in order (see batching.encode_answers). Decisions are handled first (they release keys
        the votes may need); the commits' applies and the votes' PREPARED
        records share one forced write.
        """
        require_member("batch")
        messages = decode_batch(messages)
        answers: list = [None] * len(messages)
        votes, commits, aborts = [], [], []
        for index, message in enumerate(messages):
            try:
                kind, arguments = _protocol_message(message)
                if kind == "canCommit":
                    votes.append((index, self._checked_vote(*arguments)))
                elif kind == "doCommit":
                    commits.append((index, validation.check_txid(*arguments)))
                else:
                    aborts.append((index, validation.check_txid(*arguments)))
            except (RmiKvError, TypeError) as error:
                answers[index] = error
        for index, txid in aborts:
            answers[index] = _answer_of(self.participant.do_abort, txid)
        commit_answers, vote_answers = self.participant.commit_and_vote([txid for _, txid in commits],
                                                                        [vote for _, vote in votes])
        for (index, _), answer in [*zip(commits, commit_answers), *zip(votes, vote_answers)]:
            answers[index] = answer
        return encode_answers([(False, as_rmi_kv_error(answer, self.name, "a protocol message"))
                               if isinstance(answer, BaseException) else (True, answer) for answer in answers])

    @remote_boundary
    def snapshotChunk(self, requester: str, after_key: Optional[str] = None, limit: int = 2000) -> dict:
        """Committed entries (key, value, version, txid), tombstones too, for a
        replica that is catching up; waits until no transaction here leaves it out."""
        require_member("snapshotChunk")
        validation.check_name(requester)
        if after_key is not None:
            validation.check_key(after_key, self.limits)
        validation.check_limit(limit)
        if self.storage.catching_up:
            raise ReplicaUnavailable(f"{self.name} is catching up itself", replica=self.name)
        if not self.membership.knows(requester):
            raise ReplicaUnavailable(f"{self.name} does not know member {requester} yet", replica=self.name)
        deadline = time.monotonic() + 5.0
        while self.participant.unfinished_without(requester):
            if time.monotonic() > deadline:
                raise ReplicaUnavailable(f"{self.name} still has transactions that leave {requester} out; "
                                         f"try again", replica=self.name)
            time.sleep(0.01)
        rows = self.storage.read_chunk(after_key, limit)
        entries, size = [], 0
        for row in rows:
            entries.append(row)
            size += len(row[0]) + len(row[1] or "")
            if size > CHUNK_BYTES:
                break
        return {"entries": entries, "more": len(entries) < len(rows) or len(rows) == limit}

    @remote_boundary
    def announce(self, name: str, uri: Optional[str] = None) -> dict:
        """A member (re)joined at ``uri``: take it into the member list, and
        answer with this replica's list (members and their URIs, removals)."""
        require_member("announce")
        validation.check_name(name)
        if uri is not None:
            validation.check_uri(uri)
        log.info("%s announced itself at %s", name, uri or "an address the name server knows")
        if uri is not None:
            self.membership.learn({name: uri})
        else:
            try:
                self.membership.refresh()
            except NameServerUnavailable as error:
                log.warning("cannot reload the member list: %s", error)
        return {"members": self.membership.members(), "removed": self.membership.removed()}

    @remote_boundary
    def forgetMember(self, name: str) -> None:
        """An operator removed ``name``: stop waiting for its acknowledgements."""
        require_member("forgetMember")
        validation.check_name(name)
        if name == self.name:
            raise InvalidRequest(f"{self.name} is running: stop it first, then remove it")
        registered, _ = self.membership.registrations()
        if name in registered:
            raise InvalidRequest(f"{name} is still registered; remove it from the name server first")
        self.membership.forget({name})
        self.coordinator.drop_participant(name)

    @remote_boundary
    def haveCommitted(self, txid: str, participant: str) -> None:
        """A participant applied ``txid``: the coordinator may forget it once all have."""
        require_member("haveCommitted")
        validation.check_txid(txid)
        validation.check_name(participant, "participant name")
        log.debug("haveCommitted %s from %s", txid, participant)
        self.coordinator.acknowledge(txid, participant)

    @remote_boundary
    def getDecision(self, txid: str) -> str:
        """The outcome of ``txid``: "commit", "abort" or "unknown"."""
        require_member("getDecision")
        validation.check_txid(txid)
        if Coordinator.coordinator_of(txid) == self.name:
            answer = self.coordinator.decision(txid)
        else:
            answer = self.participant.decision_as_peer(txid)
        log.debug("getDecision %s -> %s", txid, answer)
        return answer


def split_address(address: str) -> tuple[str, int]:
    """'HOST' or 'HOST:PORT' (0: the port the replica listens on) for --advertise."""
    host, separator, port = address.rpartition(":")
    if not separator or "]" in port:
        return address.strip("[]"), 0
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidRequest(f"--advertise takes HOST or HOST:PORT, not {address!r}")
    return host.strip("[]"), int(port)


class ReplicaServer:
    """The replica process: storage, recovery, the Pyro5 daemon, maintenance."""

    def __init__(self, name: str, data_dir: str | Path, ns_host: str, ns_port: int,
                 host: str = "127.0.0.1", port: int = 0, settings: Settings = Settings(),
                 failpoints: Failpoints = NO_FAILPOINTS, advertise: Optional[str] = None,
                 tls_dir: Optional[str] = None) -> None:
        self.name = validation.check_name(name)
        self.settings = settings
        configure_pyro(server=True, limits=settings.limits, max_connections=settings.max_connections)
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
                set_aside(database)
            self.storage = Storage(database, durable=settings.durable)
        except BaseException:
            self.data_lock.release()
            raise
        self.membership = Membership(name, ns_host, ns_port, store=self.storage,
                                     call_timeout=settings.timeouts.vote)
        self.kv = KeyValue(name, self.storage, self.membership, settings, failpoints)
        self.failpoints = failpoints
        nathost, natport = split_address(advertise) if advertise else (None, None)
        self.daemon = GuardedDaemon(host=host, port=port, nathost=nathost, natport=natport, guard=ConnectionGuard(
            limit=settings.max_connections, handshake_timeout=settings.timeouts.handshake,
            idle_timeout=settings.timeouts.idle_connection))
        self.uri = str(self.daemon.register(self.kv, objectId=f"rmi_kv.replica.{name}"))
        guard = self.daemon.guard
        self.kv.connections = lambda: {"open": guard.count(), "limit": guard.limit,
                                       "evicted": guard.evicted, "denied": guard.denied}
        self._stopping = threading.Event()
        self._stop_requested = threading.Event()
        self._maintenance = threading.Thread(target=self._maintain, name=f"{name}-maintenance", daemon=True)

    # ------------------------------------------------------------ start-up
    def start(self) -> None:
        """Recover, register in the name server, catch up if the data is new, serve."""
        in_doubt = self.kv.participant.recover()
        unacknowledged = self.kv.coordinator.recover()
        if in_doubt or unacknowledged:
            log.info("recovery: %d in doubt, %d commits not acknowledged by all", len(in_doubt), len(unacknowledged))
        self._daemon_thread = threading.Thread(target=self._serve, name=f"{self.name}-daemon", daemon=True)
        self._daemon_thread.start()
        members = self.membership.refresh()
        if self.storage.created_now:
            peers = sorted(set(members) - {self.name})
            if peers:
                log.info("new data directory; other members (%s): copying their committed data before "
                         "serving", ", ".join(peers))
            self.storage.set_catching_up(bool(peers))
        if self.storage.catching_up:
            self.kv.refusal = "catching up: copying the committed data from a peer"
        self._recover_once(initial=True)
        self.membership.register(self.uri)
        if self.rejoining:
            clear_removed(self.ns_host, self.ns_port, self.name)
        self._announce(self.membership.refresh())
        if self.storage.catching_up:
            self._catch_up()
        self._maintenance.start()
        log.info("%s serving at %s", self.name, self.uri)

    def _catch_up(self) -> None:
        """Copy the committed data from a serving peer, taking part in every
        write meanwhile; serve clients only once the copy is complete."""
        while not self._stop_requested.is_set():
            peers = [name for name in self.membership.names() if name != self.name]
            random.shuffle(peers)
            for peer in peers:
                try:
                    copied = self._copy_from(peer)
                except RmiKvError as error:
                    log.info("catch-up from %s failed: %s", peer, error)
                    continue
                applied = self.kv.participant.finish_catch_up()
                self.kv.refusal = None
                log.info("caught up from %s: %d entries copied, %d buffered writes applied", peer, copied, applied)
                return
            if self._nobody_has_data(peers):
                self.kv.participant.finish_catch_up()
                self.kv.refusal = None
                log.info("every member is new and holds nothing: nothing to copy")
                return
            self._stop_requested.wait(0.1)
            try:
                self.membership.refresh()
            except NameServerUnavailable as error:
                log.info("catch-up: %s", error)

    def _copy_from(self, peer: str) -> int:
        handle = PeerHandle(peer, self.membership)
        after_key, copied = None, 0
        while True:
            chunk = handle.call("snapshotChunk", self.name, after_key, 2000, timeout=15.0)
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
        participant, coordinator = self.kv.participant, self.kv.coordinator
        horizon = time.time() - (self.settings.timeouts.vote + self.settings.timeouts.decision)
        prepared = participant.prepared()
        doubtful = [txid for txid, record in prepared.items() if initial or record.created < horizon]
        if doubtful:
            remaining = resolve_in_doubt(participant, coordinator, self.kv.handle_for, doubtful, self.failpoints)
            if remaining:
                log.info("still in doubt: %s", ", ".join(remaining))
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
        self.kv.refusal = "shutting down"
        self.kv.participant.refusal = "shutting down"
        if not self.kv.wait_idle(grace):
            log.warning("shutdown: writes still in flight after %.1f s", grace)
        self._stopping.set()
        if self._maintenance.is_alive():
            self._maintenance.join(timeout=grace)
        self.daemon.guard.close_all()
        self.daemon.shutdown()
        if self._daemon_thread.is_alive():
            self._daemon_thread.join(timeout=grace)
        self.kv.coordinator.close()
        self.membership.close()
        self.storage.close()
        self.data_lock.release()
        log.info("%s stopped", self.name)
