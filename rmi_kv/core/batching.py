"""Carry the protocol messages of concurrent transactions in one call.

Each peer gets one ``MessageBatcher``. A coordinator thread queues a message
and gets a future at once; a sender thread of the batcher sends whatever is
queued in one call, both phases mixed, and each message still gets its own
answer. With one transaction at a time a batch holds one message and costs
what a plain call costs; under load, the messages that queued while the
senders were busy share the next call (and, at the peer, one forced write).
Two senders share the queue, so a vote that waits at the peer for a key
never holds up the decision that frees it.

No network code: the function that sends a batch is given (in production,
``rmi_kv.wire.peers``; what a batch looks like on the wire is ``rmi_kv.wire.codec``).
"""
from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import deque
from typing import Any, Callable, Optional, Sequence

from rmi_kv.core.messages import Reply


log = logging.getLogger(__name__)

#: most messages in one call
MAX_MESSAGES = 64
#: what one message costs besides its writes (txid, names), for the size bound
MESSAGE_OVERHEAD = 512


class _Queued:
    __slots__ = ("message", "size", "expires", "lazy", "future", "queued_at")

    def __init__(self, message: tuple, size: int, expires: Optional[float], lazy: bool) -> None:
        self.message = message
        self.size = size
        self.expires = expires
        self.lazy = lazy
        self.future: concurrent.futures.Future = concurrent.futures.Future()
        self.queued_at = time.perf_counter()


class MessageBatcher:
    """Queues messages for one peer and sends them in batches, from up to
    ``senders`` threads of its own.

    ``send_batch(messages)`` returns one ``(ok, value_or_error)`` pair per
    message, in order, or raises when the whole call failed (then every
    message of the batch fails with that error). A future resolves to
    ``messages.Reply`` (value, error, elapsed_ms), the shape the coordinator records.
    """

    def __init__(self, name: str, send_batch: Callable[[list[tuple]], Sequence[Any]], *,
                 max_messages: int = MAX_MESSAGES, max_bytes: int = 2 * 1024 * 1024, senders: int = 2,
                 linger: float = 0.002) -> None:
        self.name = name
        self._send_batch = send_batch
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._queue: deque[_Queued] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._senders: list[threading.Thread] = []
        self.max_senders = senders
        self._idle_senders = 0
        #: how long a lazy message may wait for company
        self.linger = linger
        #: queued messages that are not lazy: one of them makes a sender go at once
        self._urgent = 0
        #: calls made and messages carried, for the status and the benchmark
        self.calls = 0
        self.messages = 0

    def submit(self, message: tuple, size: int = 0, expires: Optional[float] = None,
               lazy: bool = False) -> concurrent.futures.Future:
        """Queue ``message`` (``size``: bytes of keys and values it carries).

        A message still queued at ``expires`` (a ``time.monotonic()`` value)
        is never sent: it fails as too late (a vote nobody waits for any more
        would only lock keys at the peer until recovery frees them). A
        ``lazy`` message nobody waits for waits up to ``linger`` seconds for
        another message to share its call.
        """
        queued = _Queued(message, size, expires, lazy)
        with self._ready:
            if self._closed:
                queued.future.set_result(Reply(None, RuntimeError(f"messages to {self.name} are closed"), 0.0))
                return queued.future
            self._queue.append(queued)
            self._urgent += not lazy
            if not self._idle_senders and len(self._senders) < self.max_senders:
                sender = threading.Thread(target=self._run, name=f"batch-{self.name}-{len(self._senders) + 1}",
                                          daemon=True)
                self._senders.append(sender)
                sender.start()
            self._ready.notify()
        return queued.future

    def close(self) -> None:
        """Stop the sender; messages still queued fail."""
        with self._ready:
            self._closed = True
            left, self._queue = list(self._queue), deque()
            self._urgent = 0
            self._ready.notify_all()
        for queued in left:
            queued.future.set_result(Reply(None, RuntimeError(f"messages to {self.name} are closed"), 0.0))

    def _take(self) -> list[_Queued]:
        """Wait for messages; take as many as one call may carry."""
        with self._ready:
            while not self._closed:
                wait = self._wait_before_sending()
                if wait == 0.0:
                    break
                self._idle_senders += 1
                self._ready.wait(wait)
                self._idle_senders -= 1
            batch: list[_Queued] = []
            size = 0
            now = time.monotonic()
            while self._queue and len(batch) < self.max_messages:
                if self._queue[0].expires is not None and self._queue[0].expires <= now:
                    late = self._queue.popleft()
                    self._urgent -= not late.lazy
                    late.future.set_result(Reply(None, TimeoutError(f"{self.name} was busy: not sent in time"),
                                            (time.perf_counter() - late.queued_at) * 1000.0))
                    continue
                cost = self._queue[0].size + MESSAGE_OVERHEAD
                if batch and size + cost > self.max_bytes:
                    break
                taken = self._queue.popleft()
                self._urgent -= not taken.lazy
                batch.append(taken)
                size += cost
            return batch

    def _wait_before_sending(self) -> Optional[float]:
        """0 to send now; how long to wait for the oldest lazy message's
        company; None to wait for any message."""
        if self._urgent:
            return 0.0
        if not self._queue:
            return None
        return max(0.0, self._queue[0].queued_at + self.linger - time.perf_counter())

    def _run(self) -> None:
        while True:
            batch = self._take()
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
                self.calls += 1
                self.messages += len(batch)
            now = time.perf_counter()
            for queued, answer in zip(batch, answers):
                ok, value = _unpack(answer, self.name)
                elapsed_ms = (now - queued.queued_at) * 1000.0
                queued.future.set_result(Reply(value, None, elapsed_ms) if ok else Reply(None, value, elapsed_ms))


def _unpack(answer: Any, peer: str) -> tuple[bool, Any]:
    """One answer as (ok, value); an error answer always carries an exception."""
    try:
        ok, value = answer
    except (TypeError, ValueError):
        return False, RuntimeError(f"{peer} sent a malformed answer")
    if not ok and not isinstance(value, BaseException):
        return False, RuntimeError(f"{peer} refused the message: {value}")
    return bool(ok), value
