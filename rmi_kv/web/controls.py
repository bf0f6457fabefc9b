"""What the page may do to an embedded cluster: writes and reads, crashes, pauses, restarts, failpoints.

Only a cluster this process started has controls (``run_client.py --web``
without ``--ns-host``/``--ns-port``); a page attached to a running cluster
shows it and changes nothing. Every action checks its input first and
answers with a ``Result``: what happened in one sentence, or the error and
what to do, for the page to show. Nothing raises past ``run``.
"""
from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from rmi_kv.cli.commands import parse_line
from rmi_kv.core.failpoints import NAMES as FAILPOINTS
from rmi_kv.core.failpoints import parse_specs
from rmi_kv.core.protocol_feed import shown
from rmi_kv.errors import InvalidRequest, OutcomeUnknown, RmiKvError
from rmi_kv.server.cluster import LocalCluster
from rmi_kv.wire.client import KeyValueClient

log = logging.getLogger(__name__)

DATA_ACTIONS = ("put", "get", "delete", "txn")
PROCESS_ACTIONS = ("crash", "pause", "resume", "restart", "failpoint")


@dataclass
class Result:
    """The answer to one action: ``ok``, a sentence, and for a failure the error's class."""

    ok: bool
    message: str
    error: Optional[str] = None
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "message": self.message, "error": self.error, **self.details}


def _text(form: Mapping[str, Any], name: str, *, required: bool = True) -> str:
    value = form.get(name)
    if value is None or value == "":
        if required:
            raise InvalidRequest(f"the field '{name}' is empty: fill it in")
        return ""
    if not isinstance(value, str):
        raise InvalidRequest(f"the field '{name}' must be text")
    return value


class Controls:
    """The actions of the page on ``cluster``; ``say`` puts a line in every page's event log."""

    def __init__(self, cluster: LocalCluster, say: Callable[[str, str], None]) -> None:
        self.cluster = cluster
        self.say = say
        self._paused: set[str] = set()
        self._process_lock = threading.Lock()
        self._clients: dict[Optional[str], KeyValueClient] = {}

    def describe(self) -> dict:
        """For the page: which actions there are, the replicas, and the failpoints that can be armed."""
        return {"data": list(DATA_ACTIONS), "process": list(PROCESS_ACTIONS), "replicas": list(self.cluster.names),
                "failpoints": list(FAILPOINTS)}

    def process_state(self, name: str) -> Optional[str]:
        """"paused" or "down" for a replica this cluster paused or whose process exited; else None."""
        child = self.cluster.replicas.get(name)
        if child is None or not child.alive():
            return "down"
        return "paused" if name in self._paused else None

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    # ------------------------------------------------------------ dispatch
    def run(self, action: str, form: Mapping[str, Any]) -> Result:
        """Do ``action`` with the page's ``form``; a Result whatever happens."""
        try:
            if action in DATA_ACTIONS:
                return self._data(action, form)
            if action in PROCESS_ACTIONS:
                return self._process(action, form)
            raise InvalidRequest(f"unknown action {action!r}: one of {', '.join(DATA_ACTIONS + PROCESS_ACTIONS)}")
        except RmiKvError as error:
            return Result(False, str(error), type(error).__name__, _error_details(error))
        except Exception as error:  # a bug: said in the page and the log, the cluster left as it is
            log.error("action %s failed", action, exc_info=error)
            return Result(False, f"{action} failed: {type(error).__name__}: {error}", type(error).__name__)

    def _replica(self, form: Mapping[str, Any], *, required: bool) -> Optional[str]:
        name = _text(form, "replica", required=required) or None
        if name is not None and name not in self.cluster.names:
            raise InvalidRequest(f"no replica named {name!r}: one of {', '.join(self.cluster.names)}")
        return name

    def _client(self, replica: Optional[str]) -> KeyValueClient:
        if replica not in self._clients:
            self._clients[replica] = self.cluster.client(replica, timeout=5.0)
        return self._clients[replica]

    # ------------------------------------------------------------ data
    def _data(self, action: str, form: Mapping[str, Any]) -> Result:
        through = self._replica(form, required=False)
        via = f" through {through}" if through else ""
        kv = self._client(through)
        if action == "put":
            key, value = _text(form, "key"), _text(form, "value", required=False)
            kv.put(key, value)
            return Result(True, f"PUT {key} = {_quoted(value)}{via}: committed")
        if action == "get":
            key = _text(form, "key")
            value = kv.get(key)
            return Result(True, f"GET {key}{via}: " + ("no value" if value is None else _quoted(value)),
                          details={"value": shown(value), "length": None if value is None else len(value)})
        if action == "delete":
            key = _text(form, "key")
            existed = kv.delete(key)
            return Result(True, f"DELETE {key}{via}: " + ("deleted" if existed else "it had no value"))
        command = parse_line("txn " + _text(form, "writes"))
        assert command is not None and command.writes is not None
        kv.transaction(command.writes, command.guards)
        count = len(command.writes)
        return Result(True, f"transaction of {count} write{'' if count == 1 else 's'}{via}: committed atomically")

    # ------------------------------------------------------------ processes
    def _process(self, action: str, form: Mapping[str, Any]) -> Result:
        name = self._replica(form, required=True)
        assert name is not None
        with self._process_lock:
            child = self.cluster.replicas[name]
            if action == "crash":
                if not child.alive():
                    raise InvalidRequest(f"{name} is down already: restart brings it back")
                self._paused.discard(name)
                self.cluster.kill_replica(name)
                return self._done(f"{name} crashed (killed with SIGKILL, as a power cut)")
            if action == "pause":
                if not child.alive():
                    raise InvalidRequest(f"{name} is not running: restart it first")
                if name in self._paused:
                    raise InvalidRequest(f"{name} is paused already: resume it")
                child.signal(signal.SIGSTOP)
                self._paused.add(name)
                return self._done(f"{name} paused (SIGSTOP): it holds its connections and answers nothing")
            if action == "resume":
                if name not in self._paused:
                    raise InvalidRequest(f"{name} is not paused")
                child.signal(signal.SIGCONT)
                self._paused.discard(name)
                return self._done(f"{name} resumed (SIGCONT)")
            failpoints: list[str] = []
            if action == "failpoint":
                spec = f"{_text(form, 'failpoint')}={_text(form, 'failpoint_action', required=False) or 'crash'}"
                parse_specs([spec])  # a clear error before anything is stopped
                failpoints = [spec]
            self._paused.discard(name)
            self.cluster.restart_replica(name, failpoints=failpoints)
            armed = f" with the failpoint {failpoints[0]} armed" if failpoints else ""
            return self._done(f"{name} restarted{armed}")

    def _done(self, text: str) -> Result:
        self.say(text, "action")
        return Result(True, text)


def _quoted(value: str) -> str:
    """A value as the page's answer line shows it: quoted, a long one cut, with its length."""
    cut = shown(value)
    return repr(cut) if cut == value else f"{cut!r} ({len(value):,} characters)"


def _error_details(error: RmiKvError) -> dict:
    """What the page shows besides the message: which replicas refused, and whether the outcome is unknown."""
    details: dict = {}
    replicas = getattr(error, "replicas", None)
    if replicas:
        details["replicas"] = dict(replicas)
    if isinstance(error, OutcomeUnknown) and "read the key" not in str(error):
        details["hint"] = "read the key to find out whether it committed"
    return details
