"""The servant: the Pyro5-exposed ``KeyValue`` object of one replica.

It validates every argument, decodes batches, calls the core (participant,
coordinator, member list) and encodes the answers; it holds no protocol
decisions. Every remote method lets only rmi_kv errors out (Pyro5 would drop
the caller's connection on its own CommunicationError family).
"""
from __future__ import annotations

import functools
import logging
import select
import threading
import time
from typing import Any, Callable, Optional, Protocol, TypeVar

from Pyro5.api import expose
from Pyro5.callcontext import current_context

from rmi_kv import __version__
from rmi_kv.config import Settings
from rmi_kv.core import txid as txids
from rmi_kv.core import validation
from rmi_kv.core.changes import ChangeFeed, matcher
from rmi_kv.core.feed import Batch, Cursor
from rmi_kv.core.coordinator import Coordinator
from rmi_kv.core.failover import MEMBER, Failover
from rmi_kv.core.failpoints import NO_FAILPOINTS, Failpoints
from rmi_kv.core.handles import LocalHandle
from rmi_kv.core.messages import CAN_COMMIT, DO_ABORT, DO_COMMIT, GET_DECISION, HAVE_COMMITTED, VoteRequest
from rmi_kv.core.participant import Participant
from rmi_kv.core.protocol_feed import ProtocolFeed
from rmi_kv.core.snapshot_sessions import SnapshotSessions
from rmi_kv.errors import InvalidRequest, NameServerUnavailable, ReplicaUnavailable, RmiKvError
from rmi_kv.storage.interfaces import ReplicaStorage
from rmi_kv.wire.codec import decode_batch, encode_answers, protocol_message
from rmi_kv.wire.peers import Membership, PeerHandle
from rmi_kv.wire.tls import require_member

log = logging.getLogger(__name__)

T = TypeVar("T")

#: about how much committed data one catch-up call carries
CHUNK_BYTES = 1024 * 1024
#: how long a snapshot chunk waits for transactions that leave the requester out
SNAPSHOT_DRAIN = 5.0
#: the most entries one snapshotPage returns
SNAPSHOT_PAGE_LIMIT = 5000


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


def caller_gone() -> bool:
    """Whether the client of the call being served closed its connection (or sent something
    while it should be waiting for the answer): a long poll for it may end now."""
    connection = getattr(current_context, "client", None)
    sock = getattr(connection, "sock", None)
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):  # closed under us
        return True
    return bool(readable)


def _answer_of(function: Callable, *args: Any) -> Any:
    """``function(*args)``, or the exception it raised (one message's answer)."""
    try:
        return function(*args)
    except Exception as error:
        return error


class IntegrityView(Protocol):
    """What the servant asks of the replica's integrity keeper (``rmi_kv.server.integrity``)."""

    def report(self) -> dict:
        """digestReport's answer: digest, nothing in flight, epoch, member."""

    def describe(self) -> dict:
        """status's ``integrity`` field."""

    def verify_now(self) -> dict:
        """A verification pass now, its findings acted on."""


class NoIntegrity:
    """No keeper: nothing verified, nothing compared."""

    def report(self) -> dict:
        return {"digest": None, "quiet": False, "epoch": None, "member": False}

    def describe(self) -> dict:
        return {}

    def verify_now(self) -> dict:
        raise ReplicaUnavailable("this replica does not verify its data")


def _no_snapshots() -> Any:
    raise ReplicaUnavailable("this replica takes no snapshots")


@expose
class KeyValue:
    """The remote key-value object of one replica (participant and coordinator)."""

    def __init__(self, name: str, *, storage: ReplicaStorage, participant: Participant, coordinator: Coordinator,
                 membership: Membership, failover: Failover, settings: Settings = Settings(),
                 failpoints: Failpoints = NO_FAILPOINTS, connections: Callable[[], dict] = dict,
                 integrity: IntegrityView = NoIntegrity(), changes: Optional[ChangeFeed] = None,
                 snapshots: Optional[SnapshotSessions] = None, protocol: Optional[ProtocolFeed] = None) -> None:
        self.name = name
        #: the changes committed here, for watchers (``watch``)
        self.changes = changes or ChangeFeed()
        #: the messages of the rounds coordinated here, for viewers (``protocolEvents``)
        self.protocol = protocol or ProtocolFeed()
        #: the consistent reads clients copy for backups (none without a storage that takes them)
        self.snapshots = snapshots if snapshots is not None else SnapshotSessions(name, _no_snapshots)
        self.integrity = integrity
        self.settings = settings
        self.limits = settings.limits
        self.storage = storage
        self.membership = membership
        self.failover = failover
        self.failpoints = failpoints
        self.participant = participant
        self.coordinator = coordinator
        self._local = LocalHandle(self.participant)
        self.started = time.time()
        #: why client requests are refused now (None: serving)
        self.refusal: Optional[str] = None
        self._inflight = 0
        self._inflight_changed = threading.Condition()
        #: what the connection guard of the daemon serving this object reports
        self.connections = connections

    # ------------------------------------------------------------ plumbing
    def stop_serving(self, reason: str, *, transactions_too: bool = False) -> None:
        """Refuse client requests from now on (``reason`` says why); with
        ``transactions_too``, new transactions from coordinators as well."""
        self.refusal = reason
        if transactions_too:
            self.participant.refusal = reason

    def serve(self) -> None:
        """Take client requests again."""
        self.refusal = None

    def _serving(self) -> None:
        if self.refusal is not None:
            # ``starting``: it will serve in a moment; a client may wait for it or ask another
            raise ReplicaUnavailable(f"{self.name} is not serving: {self.refusal}", replica=self.name,
                                     starting=self.storage.catching_up)

    def _handles(self, reload_members: bool = False) -> dict[str, Any]:
        if reload_members and self.failover.enabled:  # a participant is in another epoch: learn it first
            self.failover.wait_for_change(self.failover.epoch.number, self.failover.lease_seconds / 4)
        if reload_members:
            try:
                self.membership.refresh()
            except NameServerUnavailable as error:
                log.warning("cannot reload the member list: %s", error)
        handles: dict[str, Any] = {name: PeerHandle(name, self.membership)
                                   for name in self.failover.members() if name != self.name}
        handles[self.name] = self._local
        return handles

    def handle_for(self, name: str) -> Any:
        if name == self.name:
            return self._local
        return PeerHandle(name, self.membership) if name in self.membership.members() else None

    def _read(self, read: Callable[[], T]) -> T:
        """``read()``, refused unless this replica may serve reads once it has
        read (a member of its epoch, with complete data and a valid lease: it
        held every write committed until then) and its data was not emptied
        for a copy meanwhile."""
        self._serving()
        generation = self.failover.generation
        value = read()
        refusal = self.failover.read_refusal()
        if refusal is None and generation != self.failover.generation:
            refusal = f"{self.name} emptied its data to copy it again"
        if refusal is not None:
            # ``starting``: it rejoins, copies or renews by itself within about a lease; a
            # client pinned to it may wait, others ask another replica
            raise ReplicaUnavailable(f"{refusal}; ask another replica", replica=self.name,
                                     starting=self.failover.soon())
        return value

    def _write(self, writes: dict, observe=None, guards: tuple = (), trace: bool = False):
        self._serving()
        refusal = self.failover.coordinate_refusal()
        if refusal is not None:
            lacking = self.failover.lacks_majority()
            raise ReplicaUnavailable(f"{refusal}{'' if lacking else '; ask another replica'}", replica=self.name,
                                     starting=self.failover.soon())
        with self._inflight_changed:
            self._inflight += 1
        try:
            outcome = self.coordinator.execute(writes, self._handles, observe, guards, trace=trace)
        except RmiKvError as error:
            self.protocol.answered(getattr(error, "txid", None), self.name, writes, error)
            raise
        else:
            self.protocol.answered(outcome.txid, self.name, writes)
            return outcome
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
        return self._read(lambda: self.participant.read(key))

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
        if self._read(lambda: self.participant.read(key)) is None:
            return False  # nothing to delete: as a read, linearizable
        outcome = self._write({key: None}, observe=lambda writes: self.participant.read_own(key) is not None)
        return bool(outcome.observed)

    @remote_boundary
    def transaction(self, writes: dict, guards: Optional[list] = None) -> None:
        """Apply several puts (str) and deletes (None) atomically; with
        ``guards`` [(key, "==" or "!=", value or None)], only if every one holds
        (CompareFailed otherwise: nothing written)."""
        self._write(validation.check_writes(writes, self.limits), guards=validation.check_guards(guards, self.limits))

    @remote_boundary
    def cas(self, key: str, expected: Optional[str], value: Optional[str]) -> None:
        """Compare-and-set: ``key`` becomes ``value`` (None: deleted) only if it
        holds ``expected`` (None: no value) now; CompareFailed otherwise."""
        validation.check_key(key, self.limits)
        for given in (expected, value):
            if given is not None:
                validation.check_value(given, self.limits)
        self._write({key: value}, guards=((key, "==", expected),))

    @remote_boundary
    def traced(self, writes: dict) -> dict:
        """Like ``transaction``, and return the 2PC round it caused, message by message."""
        outcome = self._write(validation.check_writes(writes, self.limits), trace=True)
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
        return self._read(lambda: self.storage.keys(prefix, limit=limit, after=after))

    @remote_boundary
    def scan(self, prefix: str = "", limit: int = 100, after: Optional[str] = None) -> list:
        """Live keys starting with ``prefix`` with their values, as [key, value]
        pairs in key order, a page of at most ``limit`` after ``after``; waits
        while an undecided write holds a key with that prefix."""
        validation.check_prefix(prefix, self.limits)
        validation.check_limit(limit)
        if after is not None:
            validation.check_key(after, self.limits)
        return [[key, value] for key, value in self._read(lambda: self.participant.read_prefix(prefix, limit, after))]

    @remote_boundary
    def count(self, prefix: str = "") -> int:
        """How many live keys start with ``prefix``."""
        validation.check_prefix(prefix, self.limits)
        return self._read(lambda: self.participant.count(prefix))

    @remote_boundary
    def deletePrefix(self, prefix: str) -> int:
        """Delete every key starting with ``prefix`` in one transaction; how
        many held a value. Refused when more keys than one transaction may
        write start with it."""
        validation.check_prefix(prefix, self.limits)
        most = self.limits.max_keys_per_transaction
        keys = self._read(lambda: self.storage.keys(prefix, limit=most + 1))
        if len(keys) > most:
            total = self._read(lambda: self.storage.count(prefix))
            raise InvalidRequest(f"{total} keys start with {prefix!r}, more than the {most} one transaction may "
                                 f"delete; delete them under longer prefixes, {most} at most at a time")
        if not keys:
            return 0
        outcome = self._write({key: None for key in keys}, observe=lambda writes: sum(
            1 for key in writes if self.participant.read_own(key) is not None))
        return int(outcome.observed or 0)

    @remote_boundary
    def watch(self, target: str, is_prefix: bool, cursor: Optional[dict], wait: float) -> dict:
        """The changes committed here after ``cursor`` (None: from now) to key ``target``, or to
        the keys starting with it (``is_prefix``; "" is every key): a long poll that waits up to
        ``wait`` seconds for one. ``next`` is the cursor to ask with next; ``missed``: changes may
        have gone by unseen (a cursor of another boot of this replica, or older than what it
        keeps), and ``resumed_from`` says from where the answer goes on."""
        if not isinstance(is_prefix, bool):
            raise InvalidRequest("is_prefix must be true or false")
        if is_prefix:
            validation.check_prefix(target, self.limits)
        else:
            validation.check_key(target, self.limits)
        checked = validation.check_cursor(cursor)
        wait = validation.check_wait(wait)
        batch = self._read(lambda: self.changes.since(None if checked is None else Cursor(*checked),
                                                      matcher(target, is_prefix), timeout=wait,
                                                      gone=caller_gone))
        return self._feed_answer(batch)

    @remote_boundary
    def protocolEvents(self, cursor: Optional[dict], wait: float) -> dict:
        """The protocol messages of the rounds this replica coordinated after ``cursor`` (None: from
        now), and the answers their clients got: a long poll that waits up to ``wait`` seconds for
        one. Asking turns the recording on for a while (``core.protocol_feed``); ``next``,
        ``missed`` and ``resumed_from`` mean what they mean for ``watch``."""
        checked = validation.check_cursor(cursor, "protocolEvents")
        wait = validation.check_wait(wait)
        self.coordinator.listener = self.protocol.note
        batch = self.protocol.since(None if checked is None else Cursor(*checked), timeout=wait, gone=caller_gone)
        return self._feed_answer(batch)

    def _feed_answer(self, batch: Batch) -> dict:
        """A long poll's answer: the events found, the cursor to ask with next, and whether (and from
        where) it resumed after events it could not show."""
        return {"replica": self.name, "boot": batch.next.boot, "events": [e.as_dict() for e in batch.changes],
                "next": batch.next.as_dict(), "missed": batch.missed, "resumed_from": batch.resumed_from.as_dict()}

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
            "failover": self.failover.describe(),
            "integrity": self.integrity.describe(),
            "failpoints": self.failpoints.describe(),
            "connections": self.connections(),
            "watch": self.changes.describe(),
            "protocol_feed": self.protocol.describe(),
            "uptime": round(time.time() - self.started, 3),
        }

    @remote_boundary
    def verify(self) -> dict:
        """Recompute the digest from the data now and compare it with the kept one (the verify command)."""
        return self.integrity.verify_now()

    @remote_boundary
    def snapshotOpen(self) -> dict:
        """Begin a consistent copy of this replica's committed data (a backup), taken while writes go
        on: its id, digest and live key count; the entries come with snapshotPage."""
        if self.storage.catching_up:
            raise ReplicaUnavailable(f"{self.name} is catching up: its data is not complete yet; ask another "
                                     f"replica", replica=self.name, starting=True)
        opened: list = []

        def take() -> Any:
            opened.append(self.snapshots.open())
            return opened[-1]

        try:
            session_id, snapshot = self._read(take)
        except BaseException:
            for session_id, _ in opened:
                self.snapshots.close(session_id)
            raise
        return {"id": session_id, "replica": self.name, "digest": snapshot.digest, "keys": snapshot.live_keys,
                "taken_at": snapshot.taken_at}

    @remote_boundary
    def snapshotPage(self, snapshot_id: str, after: Optional[str] = None, limit: int = 1000) -> dict:
        """Live entries [key, value, version] of snapshot ``snapshot_id`` after key ``after`` (None: from
        the first), in key order, at most ``limit``; ``more`` says whether others follow."""
        validation.check_snapshot_id(snapshot_id)
        if after is not None:
            validation.check_key(after, self.limits)
        validation.check_limit(limit, SNAPSHOT_PAGE_LIMIT)
        entries, more = self.snapshots.page(snapshot_id, after, limit)
        return {"entries": [list(entry) for entry in entries], "more": more}

    @remote_boundary
    def snapshotClose(self, snapshot_id: str) -> bool:
        """End snapshot ``snapshot_id`` (False: it was not open any more)."""
        return self.snapshots.close(validation.check_snapshot_id(snapshot_id))

    # ----------------------------------------------------- participant API
    @remote_boundary
    def canCommit(self, txid: str, writes: dict, coordinator: str, participants: Optional[list] = None,
                  epoch: Optional[int] = None, guards: Optional[list] = None) -> bool:
        """Phase 1 (from a coordinator): vote on ``writes`` (of ``epoch``, with failover on), if ``guards`` hold."""
        require_member(CAN_COMMIT)
        return self.participant.can_commit(*self._checked_vote(txid, writes, coordinator, participants, epoch,
                                                               guards))

    def _checked_vote(self, txid: Any, writes: Any, coordinator: Any, participants: Any = None,
                      epoch: Any = None, guards: Any = None) -> VoteRequest:
        """A canCommit's arguments, validated."""
        validation.check_txid(txid)
        validation.check_name(coordinator, "coordinator name")
        writes = validation.check_writes(writes, self.limits)
        participants = validation.check_participants(participants)
        if txids.coordinator_of(txid) != coordinator:
            raise InvalidRequest(f"transaction {txid} does not belong to coordinator {coordinator}")
        if coordinator == self.name:
            raise InvalidRequest(f"{self.name} coordinates {txid} itself: its vote is never asked over the network")
        if not self.membership.knows(coordinator):
            raise InvalidRequest(f"{coordinator} is not a member: {self.name} takes no transaction from it")
        if not {self.name, coordinator} <= set(participants):
            raise InvalidRequest("canCommit needs the list of participants, with the coordinator and this replica")
        if epoch is not None:
            validation.check_epoch_number(epoch)
        return VoteRequest(txid, writes, coordinator, participants, epoch, validation.check_guards(guards, self.limits))

    @remote_boundary
    def doCommit(self, txid: str) -> bool:
        """Phase 2: apply; the True returned is the haveCommitted acknowledgement."""
        require_member(DO_COMMIT)
        return self.participant.do_commit(validation.check_txid(txid))

    @remote_boundary
    def doAbort(self, txid: str) -> bool:
        """Phase 2: drop the prepared writes."""
        require_member(DO_ABORT)
        return self.participant.do_abort(validation.check_txid(txid))

    @remote_boundary
    def batch(self, messages: str) -> str:
        """Several protocol messages in one call, each answered on its own.

        ``messages`` and the answer are JSON texts (``rmi_kv.wire.codec``).
        Decisions are handled first (they release keys the votes may need);
        the commits' applies and the votes' PREPARED records share one
        forced write.
        """
        require_member("batch")
        messages = decode_batch(messages)
        answers: list = [None] * len(messages)
        votes, commits, aborts = [], [], []
        for index, message in enumerate(messages):
            try:
                kind, arguments = protocol_message(message)
                if kind == CAN_COMMIT:
                    votes.append((index, self._checked_vote(*arguments)))
                elif kind == DO_COMMIT:
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
    def snapshotChunk(self, requester: str, after_key: Optional[str] = None, limit: int = 2000,
                      epoch: Optional[int] = None) -> dict:
        """Committed entries (key, value, version, txid), tombstones too, for a
        replica that is catching up; waits until no transaction here leaves it
        out. With failover on, only a member of the requester's ``epoch`` with
        complete data hands them out."""
        require_member("snapshotChunk")
        validation.check_name(requester)
        if after_key is not None:
            validation.check_key(after_key, self.limits)
        validation.check_limit(limit)
        if self.storage.catching_up:
            raise ReplicaUnavailable(f"{self.name} is catching up itself", replica=self.name)
        if not self.membership.knows(requester):
            raise ReplicaUnavailable(f"{self.name} does not know member {requester} yet", replica=self.name)
        if self.failover.enabled:
            current = self.failover.epoch
            if epoch is not None:
                validation.check_epoch_number(epoch)
            if self.failover.role() != MEMBER or epoch != current.number or requester not in current.members:
                raise ReplicaUnavailable(f"{self.name} (epoch {current.number}, {self.failover.role()}) holds no "
                                         f"copy for {requester} of epoch {epoch}", replica=self.name)
        older_than = self.failover.epoch.number if self.failover.enabled else None
        if self.participant.wait_unfinished_without(requester, SNAPSHOT_DRAIN, older_than):
            raise ReplicaUnavailable(f"{self.name} still has transactions that leave {requester} out, or of an "
                                     f"earlier epoch; try again", replica=self.name)
        rows = self.storage.read_chunk(after_key, limit)
        entries, size = [], 0
        for row in rows:
            entries.append(row)
            size += len(row[0]) + len(row[1] or "")
            if size > CHUNK_BYTES:
                break
        return {"entries": entries, "more": len(entries) < len(rows) or len(rows) == limit}

    @remote_boundary
    def digestReport(self) -> dict:
        """For a member's anti-entropy round: this replica's digest, and whether anything is in flight."""
        require_member("digestReport")
        return self.integrity.report()

    @remote_boundary
    def rangeDigests(self, after: Optional[str], upto: Optional[str], parts: int) -> list:
        """The key range ``after < key <= upto`` cut into up to ``parts`` ranges,
        each as [after, upto, live entries, digest] (anti-entropy)."""
        require_member("rangeDigests")
        self._check_range(after, upto)
        validation.check_limit(parts, 64)
        return [summary.as_list() for summary in self.storage.split_range(after, upto, parts)]

    @remote_boundary
    def rangeEntries(self, after: Optional[str], upto: Optional[str], limit: int = 1000) -> dict:
        """Entries (key, value, version, txid) of the range, tombstones too, in key order (anti-entropy)."""
        require_member("rangeEntries")
        self._check_range(after, upto)
        validation.check_limit(limit, 5000)
        rows = self.storage.range_entries(after, upto, limit + 1)
        return {"entries": rows[:limit], "more": len(rows) > limit}

    def _check_range(self, after: Any, upto: Any) -> None:
        for bound in (after, upto):
            if bound is not None:
                validation.check_key(bound, self.limits)
        if after is not None and upto is not None and not after < upto:
            raise InvalidRequest("a key range must start below where it ends")

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
    def grantLease(self, holder: str, epoch: int) -> dict:
        """A member renews its read lease in ``epoch``; the answer carries this replica's epoch."""
        require_member("grantLease")
        return self.failover.grant(validation.check_name(holder), validation.check_epoch_number(epoch))

    @remote_boundary
    def voteEpoch(self, number: int, members: list, proposer: str) -> dict:
        """A proposer asks for this replica's vote on epoch ``number`` with ``members``."""
        require_member("voteEpoch")
        validation.check_epoch_number(number)
        members = validation.check_participants(members)
        return self.failover.vote(number, members, validation.check_name(proposer))

    @remote_boundary
    def installEpoch(self, plan: dict) -> bool:
        """A majority voted for ``plan``'s epoch: take it (a newcomer empties its data and copies)."""
        require_member("installEpoch")
        return self.failover.install(validation.check_plan(plan))

    @remote_boundary
    def leaveEpoch(self, holder: str) -> None:
        """``holder`` is shutting down and gave up its read lease."""
        require_member("leaveEpoch")
        self.failover.left(validation.check_name(holder))

    @remote_boundary
    def settleQuery(self, txids: list) -> dict:
        """What this replica holds of each transaction (commit, abort, prepared, nothing), for an epoch change."""
        require_member("settleQuery")
        if not isinstance(txids, (list, tuple)) or len(txids) > 100_000:
            raise InvalidRequest("settleQuery takes a list of txids")
        return self.participant.settle_state([validation.check_txid(txid) for txid in txids])

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
        require_member(HAVE_COMMITTED)
        validation.check_txid(txid)
        validation.check_name(participant, "participant name")
        log.debug("haveCommitted %s from %s", txid, participant)
        self.coordinator.acknowledge(txid, participant)

    @remote_boundary
    def getDecision(self, txid: str) -> str:
        """The outcome of ``txid``: "commit", "abort" or "unknown"."""
        require_member(GET_DECISION)
        validation.check_txid(txid)
        if txids.coordinator_of(txid) == self.name:
            answer = self.coordinator.decision(txid)
        else:
            answer = self.participant.decision_as_peer(txid)
        log.debug("getDecision %s -> %s", txid, answer)
        return answer
