"""Carry the protocol messages of concurrent transactions in one call.

Each peer gets one ``MessageBatcher``. A coordinator thread queues a message
and gets its pending reply (``core.replies``) at once; the batcher's sender
sends whatever is queued in one call, both phases mixed, and each message
still gets its own answer.

Rules (they make batches form, and keep one transaction's latency):

- B1 one call in flight per peer: everything queued while it is on the wire
  goes in the next call (a second sender at once would take the next message
  alone, and batches would stay at one);
- B2 a rescue sender: when the call in flight has been out ``stall`` seconds
  (a vote waiting at the peer for a key another coordinator's transaction
  holds, a slow disk), a second sender carries what is queued (a vote never
  waits for a key of its own coordinator's transactions: their decisions
  travel behind it, ``core.participant``);
- B3 linger only for company that is coming: with no call in flight, queued
  messages wait (at most ``linger``, counted from the last answer, which
  sets transactions going again) while fewer are queued than the
  transactions in progress at this coordinator (``company``); with one
  transaction at a time a message goes at once. The company may be a few
  milliseconds away (a transaction whose votes or decision are still
  coming from other replicas): each call it joins is one call, and one
  forced write at the peer, less, which is what a replica's CPU goes to.
  A transaction that ends is company that will not come, but its client's
  next write may: messages that were waiting when it ended (``recheck``)
  wait at most ``lazy_linger`` more;
- B4 a ``lazy`` message (a decision nobody waits for) waits up to
  ``lazy_linger`` for another message to share its call (not longer: its
  keys stay locked at the peer until it arrives);
- B5 a message still queued when it expires is never sent.

No network code: the function that sends a batch is given (in production,
``rmi_kv.wire.peers``; what a batch looks like on the wire is ``rmi_kv.wire.codec``).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable, Optional, Sequence

from rmi_kv.core.messages import Reply
from rmi_kv.core.replies import PendingReply


log = logging.getLogger(__name__)

#: most messages in one call
MAX_MESSAGES = 64
#: what one message costs besides its writes (txid, names), for the size bound
MESSAGE_OVERHEAD = 512
#: how much sooner than a sleeping sender's own wake-up a call must be due to wake it (seconds)
SOONER = 0.0002


class _Queued:
    __slots__ = ("message", "size", "expires", "lazy", "reply", "queued_at")

    def __init__(self, message: tuple, size: int, expires: Optional[float], lazy: bool) -> None:
        self.message = message
        self.size = size
        self.expires = expires
        self.lazy = lazy
        self.reply = PendingReply()
        self.queued_at = time.perf_counter()


class MessageBatcher:
    """Queues messages for one peer and sends them in batches (rules B1-B5),
    from up to ``senders`` threads of its own.

    ``send_batch(messages)`` returns one ``(ok, value_or_error)`` pair per
    message, in order, or raises when the whole call failed (then every
    message of the batch fails with that error). A pending reply resolves to
    ``messages.Reply`` (value, error, elapsed_ms), the shape the coordinator
    records. ``company()``: how many transactions are in progress at this
    coordinator (B3).
    """

    def __init__(self, name: str, send_batch: Callable[[list[tuple]], Sequence[Any]], *,
                 max_messages: int = MAX_MESSAGES, max_bytes: int = 2 * 1024 * 1024, senders: int = 2,
                 linger: float = 0.05, lazy_linger: float = 0.008, stall: float = 0.05,
                 company: Callable[[], int] = lambda: 0) -> None:
        self.name = name
        self._send_batch = send_batch
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._queue: deque[_Queued] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._senders: list[threading.Thread] = []
        #: sender thread -> when it wakes by itself (time.perf_counter(); inf: only when told), while it sleeps
        self._sleepers: dict[int, float] = {}
        #: a sleeping sender was told to look and has not looked yet
        self._waking = False
        self.max_senders = senders
        #: when each call now on the wire went, and when the last answer came (time.perf_counter())
        self._in_flight: list[float] = []
        self._answered_at = 0.0
        #: how long queued messages may wait for company (B3), and lazy ones alone (B4)
        self.linger = linger
        self.lazy_linger = lazy_linger
        #: how long a call may be out before a second sender carries the queue (B2)
        self.stall = stall
        self._company = company
        #: queued messages that are not lazy
        self._urgent = 0
        #: when a transaction of the company last ended (time.perf_counter(); B3), and how much company
        #: there was with it
        self._company_left_at = 0.0
        self._company_at_left = 0
        #: calls made and messages carried, for the status and the benchmark
        self.calls = 0
        self.messages = 0

    def submit(self, message: tuple, size: int = 0, expires: Optional[float] = None,
               lazy: bool = False) -> PendingReply:
        """Queue ``message`` (``size``: bytes of keys and values it carries).

        A message still queued at ``expires`` (a ``time.monotonic()`` value)
        is never sent: it fails as too late (a vote nobody waits for any more
        would only lock keys at the peer until recovery frees them). A
        ``lazy`` message nobody waits for waits up to ``lazy_linger`` seconds for
        another message to share its call.
        """
        queued = _Queued(message, size, expires, lazy)
        with self._ready:
            if self._closed:
                queued.reply.set_result(Reply(None, RuntimeError(f"messages to {self.name} are closed"), 0.0))
                return queued.reply
            self._queue.append(queued)
            self._urgent += not lazy
            if len(self._senders) < min(self.max_senders, len(self._in_flight) + 1):
                sender = threading.Thread(target=self._run, name=f"batch-{self.name}-{len(self._senders) + 1}",
                                          daemon=True)
                self._senders.append(sender)
                sender.start()
            else:
                self._wake_if_sooner()
        return queued.reply

    def recheck(self) -> None:
        """A transaction of the company ended: queued messages waiting for it look again (B3)."""
        with self._ready:
            self._company_left_at = time.perf_counter()
            self._company_at_left = self._company() + 1  # the one that ended, and its successor's place
            self._wake_if_sooner()

    def _wake_if_sooner(self) -> None:
        """Wake a sleeping sender only when the rules now let a call go before
        it would wake anyway (each needless wake-up is two thread switches, and
        a message queued while a call is in flight changes nothing until the
        answer comes). Called with the lock held."""
        if not self._sleepers or self._waking:
            return  # every sender is on the wire, or one was woken and looks at the queue as it is then
        wait = self._wait_before_sending()
        # sooner by more than the rounding of a deadline computed twice (a sender due a moment later wakes by itself)
        if wait is not None and time.perf_counter() + wait < min(self._sleepers.values()) - SOONER:
            self._waking = True
            self._ready.notify()

    def close(self) -> None:
        """Stop the senders; messages still queued fail."""
        with self._ready:
            self._closed = True
            left, self._queue = list(self._queue), deque()
            self._urgent = 0
            self._ready.notify_all()
        for queued in left:
            queued.reply.set_result(Reply(None, RuntimeError(f"messages to {self.name} are closed"), 0.0))

    def _take(self) -> tuple[list[_Queued], float]:
        """Wait until the rules let a call go; take as many messages as one
        call may carry, and note when it goes."""
        with self._ready:
            while not self._closed:
                wait = self._wait_before_sending()
                if wait == 0.0:
                    break
                me = threading.get_ident()
                self._sleepers[me] = float("inf") if wait is None else time.perf_counter() + wait
                try:
                    self._ready.wait(wait)
                finally:
                    del self._sleepers[me]
                    self._waking = False
            batch: list[_Queued] = []
            size = 0
            now = time.monotonic()
            while self._queue and len(batch) < self.max_messages:
                if self._queue[0].expires is not None and self._queue[0].expires <= now:
                    late = self._queue.popleft()
                    self._urgent -= not late.lazy
                    late.reply.set_result(Reply(None, TimeoutError(f"{self.name} was busy: not sent in time"),
                                                (time.perf_counter() - late.queued_at) * 1000.0))
                    continue
                cost = self._queue[0].size + MESSAGE_OVERHEAD
                if batch and size + cost > self.max_bytes:
                    break
                taken = self._queue.popleft()
                self._urgent -= not taken.lazy
                batch.append(taken)
                size += cost
            started = time.perf_counter()
            if batch:
                self._in_flight.append(started)
            return batch, started

    def _wait_before_sending(self) -> Optional[float]:
        """0 to send now; else how long to wait before looking again (None: until told)."""
        if not self._queue:
            return None
        now = time.perf_counter()
        if self._in_flight:  # B1, B2
            if len(self._in_flight) >= self.max_senders:
                return None
            return max(0.0, self._in_flight[0] + self.stall - now)
        if self._urgent and len(self._queue) >= self._company():  # B3: all the company there is
            left = self._company_left_at
            if (self._queue[0].queued_at < left and now < left + self.lazy_linger
                    and len(self._queue) < self._company_at_left):
                return left + self.lazy_linger - now  # company ended while these waited: its successor may come
            return 0.0
        # from the last answer on: the transactions it answered are about to send their next messages
        waiting_since = max(self._queue[0].queued_at, self._answered_at)
        return max(0.0, waiting_since + (self.linger if self._urgent else self.lazy_linger) - now)  # B3, B4

    def _run(self) -> None:
        while True:
            batch, started = self._take()
            if not batch:
                if self._closed:
                    return
                continue  # every message taken was too late
            try:
                answers = list(self._send_batch([queued.message for queued in batch]))
                if len(answers) != len(batch):
                    raise RuntimeError(f"{self.name} answered {len(answers)} of {len(batch)} messages")
            except Exception as error:  # the whole call failed: so did each message
                answers = [(False, error)] * len(batch)
            with self._ready:
                self._in_flight.remove(started)
                self._answered_at = time.perf_counter()
                self.calls += 1
                self.messages += len(batch)
            now = time.perf_counter()
            for queued, answer in zip(batch, answers):
                ok, value = _unpack(answer, self.name)
                elapsed_ms = (now - queued.queued_at) * 1000.0
                queued.reply.set_result(Reply(value, None, elapsed_ms) if ok else Reply(None, value, elapsed_ms))


def _unpack(answer: Any, peer: str) -> tuple[bool, Any]:
    """One answer as (ok, value); an error answer always carries an exception."""
    try:
        ok, value = answer
    except (TypeError, ValueError):
        return False, RuntimeError(f"{peer} sent a malformed answer")
    if not ok and not isinstance(value, BaseException):
        return False, RuntimeError(f"{peer} refused the message: {value}")
    return bool(ok), value
