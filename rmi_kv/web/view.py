"""What the web view knows of the cluster, kept up to date and told to every page.

For each replica two threads: one long-polls its protocol feed
(``KeyValue.protocolEvents``: the messages of the rounds it coordinates, and
the answers its clients got), one asks its ``status`` (and reads the keys the
page showed being written) every ``poll`` seconds. Each finding becomes an
update (a dict with a ``kind``): ``protocol`` (one message), ``node`` (a
replica's state), ``values`` (the watched keys as that replica holds them),
``log`` (a line for the event log: a replica going down or coming back, a new
epoch) and ``replicas`` (a replica the name server lists since the page opened). Updates go to every subscriber (the pages' server-sent event streams);
the latest ones are kept for a page that opens later.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable, Optional

from rmi_kv.core.protocol_feed import shown
from rmi_kv.errors import KeyInDoubt, NameServerUnavailable, ReplicaUnavailable, RmiKvError
from rmi_kv.wire.client import KeyValueClient

log = logging.getLogger(__name__)

#: how many protocol messages and log lines a page that opens gets
HISTORY = 600
#: how many of the keys written last the page shows on every replica
WATCHED_KEYS = 6
#: how long one protocol poll waits at a replica (short, so that stopping is quick)
FEED_WAIT = 2.0

Update = dict
Subscriber = Callable[[Update], None]


def node_state(status: dict, process: Optional[str] = None) -> str:
    """One word for a replica's state: paused, down, catching up, not serving, outside the epoch or serving."""
    if process in ("paused", "down"):
        return process
    if not status.get("reachable"):  # it took the connection and never answered: running, but stopped or stuck
        error = str(status.get("error", "")).lower()
        return "paused" if "timeout" in error or "may be paused" in error else "down"
    if status.get("catching_up"):
        return "catching up"
    if not status.get("serving"):
        return "not serving"
    failover = status.get("failover") or {}
    if failover.get("failover") and failover.get("role") != "member":
        return "outside the epoch"
    return "serving"


def node_summary(name: str, status: dict, process: Optional[str] = None) -> dict:
    """What the page shows of one replica: state, epoch, role, lease, keys, digest, doubts, counts."""
    failover = status.get("failover") or {}
    epoch = failover.get("epoch") or {}
    lease = failover.get("lease") or {}
    digest = status.get("digest")
    return {
        "name": name, "state": node_state(status, process), "reachable": bool(status.get("reachable")),
        "error": status.get("error"), "failover": bool(failover.get("failover")),
        "epoch": epoch.get("number"), "epoch_members": epoch.get("members"), "proposer": epoch.get("proposer"),
        "settled": epoch.get("settled") or {}, "role": failover.get("role"),
        "lease_valid": lease.get("valid"), "lease_remaining": lease.get("remaining"),
        "keys": status.get("keys"), "digest": digest[:12] if isinstance(digest, str) else None,
        "in_doubt": len(status.get("in_doubt") or ()), "committed": status.get("committed"),
        "aborted": status.get("aborted"), "failpoints": status.get("failpoints") or {},
        "refusal": status.get("refusal"), "latency_ms": status.get("latency_ms"),
    }


class ClusterView:
    """Follows the replicas named by ``names()`` and tells every subscriber what it finds."""

    def __init__(self, connect: Callable[..., KeyValueClient], names: Callable[[], list[str]], *,
                 poll: float = 0.5, process_state: Callable[[str], Optional[str]] = lambda name: None) -> None:
        """``connect(timeout, replica=None)``: a client of the cluster (bound to ``replica``);
        ``process_state(name)``: "paused" or "down" when the view knows it better than a status
        call can (an embedded cluster's own processes), else None."""
        self.connect = connect
        self.names = names
        self.poll = poll
        self.process_state = process_state
        self._feeds = connect(5.0)
        self._statuses = connect(1.0)
        #: per replica, a client bound to it (for reading the watched keys there)
        self._pinned: dict[str, KeyValueClient] = {}
        self._lock = threading.Lock()
        self._subscribers: list[Subscriber] = []
        self._history: collections.deque = collections.deque(maxlen=HISTORY)
        self._nodes: dict[str, dict] = {}
        self._values: dict[str, dict] = {}
        self._watched: list[str] = []
        self._epoch: Optional[int] = None
        #: every replica named so far, in order (the page's nodes)
        self._names: list[str] = []
        #: the replicas followed, each by two threads
        self._threads: dict[str, list[threading.Thread]] = {}
        self._discoverer = threading.Thread(target=self._discover, name="web-discover", daemon=True)
        self._stop = threading.Event()

    # ------------------------------------------------------------ lifetime
    def start(self) -> "ClusterView":
        """Begin following every replica named now (and, every few seconds, any new one)."""
        self._follow_new()
        self._discoverer.start()
        return self

    def stop(self) -> None:
        """Stop every thread (each ends within a feed wait) and close the connections."""
        self._stop.set()
        for thread in [self._discoverer, *(thread for pair in list(self._threads.values()) for thread in pair)]:
            if thread.is_alive():
                thread.join(FEED_WAIT + 6.0)
        for client in [self._feeds, self._statuses, *self._pinned.values()]:
            client.close()

    def _follow_new(self) -> None:
        for name in self.names():
            if name in self._threads:
                continue
            with self._lock:
                self._names = sorted({*self._names, name})
                names = list(self._names)
            if self._discoverer.is_alive():  # one that came later: the pages draw it too
                self.publish({"kind": "replicas", "replicas": names})
            threads = [threading.Thread(target=self._follow_feed, args=(name,), name=f"web-feed-{name}", daemon=True),
                       threading.Thread(target=self._follow_status, args=(name,), name=f"web-status-{name}",
                                        daemon=True)]
            self._threads[name] = threads
            for thread in threads:
                thread.start()

    def _discover(self) -> None:
        while not self._stop.wait(5.0):
            try:
                self._follow_new()
            except RmiKvError as error:
                log.debug("cannot list the replicas: %s", error)

    # ------------------------------------------------------------ subscribers
    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Tell ``subscriber`` every update from now on; returns what ends that."""
        with self._lock:
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with self._lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

        return unsubscribe

    def snapshot(self) -> dict:
        """What a page that opens now is told first: the replicas, their state and values, the recent history."""
        with self._lock:
            return {"kind": "hello", "replicas": list(self._names),
                    "nodes": dict(self._nodes), "values": dict(self._values), "watched": list(self._watched),
                    "history": list(self._history)}

    def publish(self, update: Update) -> None:
        """Tell every subscriber ``update`` (protocol messages and log lines are kept for later pages too)."""
        with self._lock:
            if update["kind"] in ("protocol", "log"):
                self._history.append(update)
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber(update)
            except Exception:  # a page that went away must not stop the others
                log.debug("a subscriber failed", exc_info=True)

    def say(self, text: str, level: str = "info") -> None:
        """A line for every page's event log (and this process's log)."""
        log.info("%s", text)
        self.publish({"kind": "log", "level": level, "text": text, "time": time.time()})

    def watch_keys(self, keys: list[str]) -> None:
        """Show ``keys`` (written just now) on every replica from now on (the last WATCHED_KEYS)."""
        with self._lock:
            for key in keys:
                if key in self._watched:
                    self._watched.remove(key)
                self._watched.append(key)
            del self._watched[:-WATCHED_KEYS]

    # ------------------------------------------------------------ following
    def _follow_feed(self, name: str) -> None:
        cursor: Optional[dict] = None
        pause = 0.1
        while not self._stop.is_set():
            try:
                answer = self._feeds.protocol_events(name, cursor, FEED_WAIT)
            except (ReplicaUnavailable, NameServerUnavailable) as error:
                log.debug("protocol feed of %s: %s", name, error)
                cursor = None
                self._stop.wait(pause)
                pause = min(pause * 2, 1.0)
                continue
            except RmiKvError as error:  # a cursor it no longer takes: start again from now
                log.warning("protocol feed of %s: %s", name, error)
                cursor = None
                continue
            pause = 0.1
            cursor = answer["next"]
            for event in answer["events"]:
                if event["message"] == "answer" and event.get("writes"):  # committed, aborted or unknown: show it
                    self.watch_keys(list(event["writes"]))
                self.publish({"kind": "protocol", "replica": name, **event})

    def _follow_status(self, name: str) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                status = self._statuses.status_of(name)
            except (ReplicaUnavailable, NameServerUnavailable) as error:
                status = {"name": name, "reachable": False, "error": str(error)}
            node = node_summary(name, status, self.process_state(name))
            values = self._read_values(name, node) if node["reachable"] else {}
            self._noticed(name, node)
            with self._lock:
                self._nodes[name] = node
                changed = self._values.get(name) != values
                self._values[name] = values
            self.publish({"kind": "node", "node": node})
            if changed:  # a page is told the values again only when they changed
                self.publish({"kind": "values", "replica": name, "values": values})
            self._stop.wait(max(0.05, self.poll - (time.monotonic() - began)))

    def _read_values(self, name: str, node: dict) -> dict:
        """The watched keys as ``name`` holds them: value (cut to VALUE_SHOWN characters, with its
        length), None (none), or a note why it did not say."""
        with self._lock:
            keys = list(self._watched)
        values: dict[str, Any] = {}
        client = self._pinned.get(name)
        if client is None:
            client = self._pinned[name] = self.connect(1.0, replica=name)
        for key in keys:
            try:
                value = client.get(key)
                values[key] = {"value": shown(value), "length": None if value is None else len(value)}
            except KeyInDoubt:
                values[key] = {"note": "in doubt"}
            except ReplicaUnavailable as error:
                # a read of a key held PREPARED waits longer than this view asks: that is a doubt too
                values[key] = {"note": "in doubt" if node.get("in_doubt") else type(error).__name__}
            except RmiKvError as error:
                values[key] = {"note": type(error).__name__}
        return values

    def _noticed(self, name: str, node: dict) -> None:
        """Log lines for what changed at ``name``: its state, or an epoch the cluster had not shown yet."""
        with self._lock:
            before = self._nodes.get(name)
            new_epoch = node["epoch"] is not None and (self._epoch is None or node["epoch"] > self._epoch)
            if new_epoch:
                first, self._epoch = self._epoch is None, node["epoch"]
        if before is not None and before["state"] != node["state"]:
            level = "info" if node["state"] == "serving" else "warning"
            self.say(f"{name} is {node['state']}" + (f" ({node['refusal']})" if node.get("refusal") else ""), level)
        if new_epoch and not first:
            members = ", ".join(node["epoch_members"] or ())
            settled = "; ".join(f"{txid} settled {outcome}" for txid, outcome in sorted(node["settled"].items()))
            proposer = f", proposed by {node['proposer']}" if node.get("proposer") else ""
            self.say(f"epoch {node['epoch']}: members {members}{proposer}" + (f"; {settled}" if settled else ""))
