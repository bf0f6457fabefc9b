"""Failpoints: named places where a replica can be made to fail on purpose.

Turned on with ``run_server.py --failpoint NAME=ACTION`` or the environment
variable ``RMI_KV_FAILPOINTS="NAME=ACTION,..."``. Actions: ``crash`` (hard exit,
as if killed), ``delay:MS``, ``error`` (raise), each optionally prefixed with
``once:``. With none set, ``hit`` is a dictionary look-up on an empty dict.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Iterable, Mapping

from rmi_kv.errors import InjectedFault, InvalidRequest

log = logging.getLogger(__name__)

ENVIRONMENT_VARIABLE = "RMI_KV_FAILPOINTS"

NAMES = (
    "participant.before_prepare",
    "participant.after_prepare",
    "participant.before_commit",
    "participant.before_ack",
    "coordinator.after_prepare",
    "coordinator.before_decision",
    "coordinator.after_decision",
    "coordinator.mid_commit",
    "recovery.mid_recovery",
    "recovery.catch_up_chunk",
    "failover.after_votes",
)


@dataclass
class Action:
    kind: str  # "crash" | "delay" | "error"
    delay_ms: float = 0.0
    once: bool = False
    fired: bool = False


def parse_action(text: str) -> Action:
    """Parse ``[once:]crash|error|delay:MS``."""
    once = text.startswith("once:")
    body = text[len("once:"):] if once else text
    if body in ("crash", "error"):
        return Action(body, once=once)
    if body.startswith("delay:"):
        try:
            milliseconds = float(body[len("delay:"):])
        except ValueError:
            milliseconds = -1
        if 0 <= milliseconds <= 3_600_000:
            return Action("delay", delay_ms=milliseconds, once=once)
    raise InvalidRequest(f"unknown failpoint action {text!r}: use crash, error or delay:MS (0 to 3600000), "
                         f"optionally after 'once:'")


def parse_specs(specs: Iterable[str]) -> dict[str, Action]:
    """Parse ``NAME=ACTION`` items (comma-separated lists allowed)."""
    points: dict[str, Action] = {}
    for spec in specs:
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, separator, action = item.partition("=")
            if not separator:
                raise InvalidRequest(f"failpoint {item!r} needs the form NAME=ACTION")
            if name not in NAMES:
                raise InvalidRequest(f"unknown failpoint {name!r}; known: {', '.join(NAMES)}")
            points[name] = parse_action(action)
    return points


class Failpoints:
    """The failpoints armed in this process."""

    def __init__(self, points: Mapping[str, Action] | None = None) -> None:
        self._points = dict(points or {})
        self._lock = threading.Lock()

    @classmethod
    def from_sources(cls, specs: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> "Failpoints":
        environ = os.environ if environ is None else environ
        all_specs = [environ.get(ENVIRONMENT_VARIABLE, "")] + list(specs)
        return cls(parse_specs(all_specs))

    def armed(self, name: str) -> bool:
        action = self._points.get(name)
        return action is not None and not (action.once and action.fired)

    def describe(self) -> dict[str, str]:
        return {name: action.kind for name, action in self._points.items()}

    def hit(self, name: str) -> None:
        """Fail here if ``name`` is armed."""
        if not self._points:
            return
        action = self._points.get(name)
        if action is None:
            return
        with self._lock:
            if action.once and action.fired:
                return
            action.fired = True
        log.warning("failpoint %s fires: %s", name, action.kind)
        if action.kind == "crash":
            for handler in logging.getLogger().handlers:
                handler.flush()
            os.kill(os.getpid(), signal.SIGKILL)
            os._exit(137)  # pragma: no cover - SIGKILL does not return
        if action.kind == "delay":
            time.sleep(action.delay_ms / 1000.0)
            return
        raise InjectedFault(f"failpoint {name} raised an injected error")


NO_FAILPOINTS = Failpoints()
