"""Answers that come later: one message's ``Reply``, and waiting for several.

A coordinator sends a message to each participant and waits for all their
answers at once; the threads that carry the messages set them. This is the
one hand-off of every message, so it is kept to plain locks:

- R1 a ``PendingReply`` is set once; setting it again is a mistake (raises);
- R2 a callback added before the answer runs in the thread that sets it,
  once; one added after runs at once, in the thread that adds it; one that
  raises is logged, and the others and the setter go on;
- R3 ``wait_all`` returns once every answer is in, or at its timeout, with
  the answered and the unanswered apart: one wake-up for the whole set, not
  one per answer; an answer that comes after the timeout changes nothing
  for the waiter that gave up.

``wait_all`` also takes ``concurrent.futures.Future`` objects (anything with
``add_done_callback`` and ``done``), so a handle may answer with either.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Iterable, Optional

from rmi_kv.core.messages import Reply

log = logging.getLogger(__name__)


class PendingReply:
    """The ``Reply`` to one message, once it comes (rules R1, R2)."""

    __slots__ = ("_lock", "_reply", "_callbacks")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reply: Optional[Reply] = None
        self._callbacks: Optional[list[Callable[["PendingReply"], Any]]] = None

    @classmethod
    def answered(cls, reply: Reply) -> "PendingReply":
        """One that has its answer already."""
        pending = cls()
        pending._reply = reply
        return pending

    def set_result(self, reply: Reply) -> None:
        """Give the answer; the callbacks waiting for it run now, in this thread."""
        with self._lock:
            if self._reply is not None:
                raise RuntimeError("this message has its answer already")
            self._reply = reply
            callbacks, self._callbacks = self._callbacks, None
        for callback in callbacks or ():
            self._run(callback)

    def done(self) -> bool:
        return self._reply is not None

    def add_done_callback(self, callback: Callable[["PendingReply"], Any]) -> None:
        """Run ``callback(self)`` once the answer is in (now, when it is)."""
        if self._reply is None:
            with self._lock:
                if self._reply is None:
                    if self._callbacks is None:
                        self._callbacks = []
                    self._callbacks.append(callback)
                    return
        self._run(callback)

    def _run(self, callback: Callable[["PendingReply"], Any]) -> None:
        """A failing callback is logged: it must not stop the thread that carries the answers (R2)."""
        try:
            callback(self)
        except Exception:
            log.exception("a callback on a protocol answer failed")

    def result(self, timeout: Optional[float] = None) -> Reply:
        """The answer, waiting for it up to ``timeout`` seconds (None: as long
        as it takes); TimeoutError when it has not come by then."""
        if self._reply is None and wait_all([self], timeout)[1]:
            raise TimeoutError("no answer in time")
        return self._reply  # type: ignore[return-value]


class _Countdown:
    """Opens its gate when the last of ``left`` answers is in."""

    __slots__ = ("left", "mutex", "gate")

    def __init__(self, left: int) -> None:
        self.left = left
        self.mutex = threading.Lock()
        self.gate = threading.Lock()
        self.gate.acquire()

    def __call__(self, _answered: Any) -> None:
        with self.mutex:
            self.left -= 1
            last = self.left == 0
        if last:
            self.gate.release()


def wait_all(pending: Iterable[Any], timeout: Optional[float] = None) -> tuple[list, list]:
    """Wait until every one of ``pending`` has its answer, or ``timeout``
    seconds (None: no limit); returns (answered, unanswered) (rule R3)."""
    pending = list(pending)
    waiting = [each for each in pending if not each.done()]
    if waiting:
        countdown = _Countdown(len(waiting))
        for each in waiting:
            each.add_done_callback(countdown)
        if timeout is None:
            countdown.gate.acquire()
        elif timeout > 0:
            countdown.gate.acquire(timeout=timeout)
    answered, unanswered = [], []
    for each in pending:
        (answered if each.done() else unanswered).append(each)
    return answered, unanswered
