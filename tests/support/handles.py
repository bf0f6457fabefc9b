"""Fake participants reached by message, as a coordinator reaches a peer.

A coordinator sends every message to a participant other than its own with
``send`` and waits on its pending reply; these run the call on a thread of its own
(a daemon thread: a fake that never answers must not hold up the end of the
test run), as a peer link runs it on the peer.
"""
from __future__ import annotations

import threading
from typing import Any, Optional

from rmi_kv.core.handles import LocalHandle, timed
from rmi_kv.core.replies import PendingReply


class SendsInBackground:
    """Mixin: ``send(message, *args)`` calls ``self.<message>(*args)`` in the background."""

    def send(self, message: str, *args: Any, expires: Optional[float] = None,
             lazy: bool = False) -> PendingReply:
        reply = PendingReply()
        threading.Thread(target=lambda: reply.set_result(timed(getattr(self, message), *args)),
                         daemon=True).start()
        return reply


class ByMessage(SendsInBackground, LocalHandle):
    """A real Participant reached by message (the coordinator's peers in a test cluster)."""
