"""watch on real processes: a run_client.py watcher sees the changes committed through any
replica, only for its key or prefix, survives a restart of its replica saying what it may have
missed, and leaves nothing behind at the replica when it goes away."""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from typing import Callable, Optional

import pytest

from support import launchers

from support.cli import ROOT

EVENT_WAIT = 20.0


class Watcher:
    """``run_client.py ... watch ...`` as a subprocess; its stdout lines are read as they come."""

    def __init__(self, ns_port: int, *args: str, stdin: Optional[str] = None) -> None:
        command = [sys.executable, str(ROOT / "run_client.py"), "--ns-port", str(ns_port), *args]
        env = {key: value for key, value in os.environ.items() if key not in ("NO_COLOR", "FORCE_COLOR")}
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        if stdin is not None:
            self.process.stdin.write(stdin)
            self.process.stdin.flush()  # left open: the script waits in its watch, not at end of input
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self, matches: Callable[[str], bool], timeout: float = EVENT_WAIT) -> str:
        """The next stdout line that ``matches`` (the others are kept in ``seen``)."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no matching line within {timeout} s; seen: {self.seen}") from None
            if line is None:
                raise AssertionError(f"the watcher ended (stderr: {self.process.stderr.read()}); seen: {self.seen}")
            self.seen.append(line)
            if matches(line):
                return line

    def next_event(self, kind: str, timeout: float = EVENT_WAIT) -> dict:
        """The next --json document of event ``kind`` (watching, change, lost, resumed)."""
        return json.loads(self.next_line(lambda line: json.loads(line).get("event") == kind, timeout))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        for stream in (self.process.stdout, self.process.stderr, self.process.stdin):
            if stream is not None:
                stream.close()

    def __enter__(self) -> "Watcher":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def watch_status(cluster, name: str) -> dict:
    with cluster.client(name) as kv:
        return next(status for status in kv.status() if status["name"] == name)["watch"]


def test_a_watcher_sees_the_changes_made_through_other_replicas_only_for_its_prefix_or_key(shared_cluster):
    with Watcher(shared_cluster.ns_port, "--replica", "replica2", "--json", "watch", "--prefix", "user:") as prefix, \
            Watcher(shared_cluster.ns_port, "--replica", "replica3", "watch", "user:2") as key:
        watching = prefix.next_event("watching")
        assert (watching["replica"], watching["target"], watching["prefix"]) == ("replica2", "user:", True)
        wait_until_watching(shared_cluster, "replica3")
        with shared_cluster.client("replica4") as kv4, shared_cluster.client("replica5") as kv5:
            first = kv4.traced({"user:1": "a"})["txid"]
            kv4.put("other", "not watched")
            second = kv5.traced({"user:2": "b b", "elsewhere": "x"})["txid"]
            third = kv5.traced({"user:1": None})["txid"]
        with shared_cluster.client("replica2") as kv2:  # coordinated by the watched replica itself
            fourth = kv2.traced({"user:3": "own"})["txid"]
        changes = [prefix.next_event("change") for _ in range(4)]
        assert [(c["key"], c["value"], c["deleted"], c["txid"]) for c in changes] == [
            ("user:1", "a", False, first), ("user:2", "b b", False, second), ("user:1", None, True, third),
            ("user:3", "own", False, fourth)]
        assert all(c["replica"] == "replica2" and c["time"] for c in changes)
        line = key.next_line(lambda text: True)
        assert line.split("  ")[1:] == ["user:2", '"b b"', second]  # time, key, value, txid
        assert not [seen for seen in prefix.seen if '"other"' in seen or '"elsewhere"' in seen]


def wait_until_watching(cluster, name: str) -> None:
    """A plain watcher says it is watching on stderr only: wait until its poll waits at the replica."""
    cluster.wait_for(lambda: watch_status(cluster, name)["waiting"] >= 1, timeout=EVENT_WAIT,
                     what=f"a watcher waiting at {name}")


def test_a_watcher_that_goes_away_leaves_nothing_waiting_at_the_replica(shared_cluster):
    with Watcher(shared_cluster.ns_port, "--replica", "replica4", "--json", "watch", "gone") as watcher:
        watcher.next_event("watching")
        wait_until_watching(shared_cluster, "replica4")
        watcher.process.kill()
    # a poll waits up to 5 s for a change; the replica sees the closed connection well before
    shared_cluster.wait_for(lambda: watch_status(shared_cluster, "replica4")["waiting"] == 0, timeout=2.0,
                            what="the watcher's poll to end")
    with shared_cluster.client("replica4") as kv:
        kv.put("gone", "written after the watcher left")
    assert watch_status(shared_cluster, "replica4")["waiting"] == 0


def test_script_mode_watches_until_ctrl_c_and_exits_130(shared_cluster):
    with Watcher(shared_cluster.ns_port, "--json", stdin="watch script:key\n") as watcher:
        watcher.next_event("watching")
        with shared_cluster.client() as kv:
            txid = kv.traced({"script:key": "1"})["txid"]
        assert watcher.next_event("change")["txid"] == txid
        watcher.process.send_signal(signal.SIGINT)
        assert watcher.process.wait(timeout=10) == 130
        assert "interrupted" in watcher.process.stderr.read()


def test_after_a_restart_of_its_replica_the_watcher_reconnects_and_says_what_it_may_have_missed(shared_cluster):
    with Watcher(shared_cluster.ns_port, "--replica", "replica1", "--json", "watch", "restart:key") as watcher:
        watcher.next_event("watching")
        with shared_cluster.client("replica2") as kv:
            kv.put("restart:key", "before")
            assert watcher.next_event("change")["value"] == "before"
            shared_cluster.restart_replica("replica1")
            lost = watcher.next_event("lost")
            assert lost["replica"] == "replica1" and lost["error"]
            resumed = watcher.next_event("resumed")
            assert resumed["replica"] == "replica1" and resumed["missed"] is True
            assert set(resumed["resumed_from"]) == {"boot", "seq"}
            assert resumed["since"] >= watcher_change_time(watcher)  # the last change it saw
            kv.put("restart:key", "after")
        assert watcher.next_event("change")["value"] == "after"


def watcher_change_time(watcher: Watcher) -> float:
    changes = [json.loads(line) for line in watcher.seen if json.loads(line).get("event") == "change"]
    return changes[-1]["committed_at"]


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    with launchers.tls_cluster(tmp_path_factory.mktemp("watch-tls")) as cluster:
        yield cluster


def test_watch_works_with_a_client_certificate_under_tls(tls_cluster):
    """This process never speaks TLS itself (Pyro5's settings are per process): the writer is a subprocess."""
    tls = ["--tls-dir", tls_cluster.tls_dir]
    with Watcher(tls_cluster.ns_port, *tls, "--json", "watch", "--prefix", "tls:") as watcher:
        watcher.next_event("watching")
        put = subprocess.run([sys.executable, str(ROOT / "run_client.py"), "--ns-port", str(tls_cluster.ns_port),
                              *tls, "put", "tls:k", "v"], capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL)
        assert put.returncode == 0, put.stderr
        change = watcher.next_event("change")
        assert (change["key"], change["value"]) == ("tls:k", "v")


@pytest.mark.parametrize("args", [
    ("", False, None, 1.0),  # an empty key (a prefix may be empty, a key not)
    ("k", "yes", None, 1.0),
    ("k", False, None, 0),
    ("k", False, None, 31),
    ("k", False, None, "1"),
    ("k", False, {"boot": "b"}, 1.0),
    ("k", False, {"boot": "b", "seq": -1}, 1.0),
    ("k" * 2000, True, None, 1.0),
])
def test_bad_watch_arguments_are_refused_with_a_clear_error(shared_cluster, args):
    from Pyro5.api import Proxy

    from rmi_kv.errors import InvalidRequest

    with Proxy(shared_cluster.client().replicas()["replica5"]) as proxy:
        proxy._pyroTimeout = 10
        with pytest.raises(InvalidRequest) as refused:
            proxy.watch(*args)
    assert str(refused.value)


def test_a_cursor_of_another_boot_resumes_from_now_and_says_missed(shared_cluster):
    with shared_cluster.client("replica5") as kv:
        proxy = kv._connected("replica5")
        answer = proxy.watch("", True, {"boot": "not-this-boot", "seq": 3}, 0.01)
    assert answer["missed"] is True and answer["events"] == [] and answer["replica"] == "replica5"
    assert answer["resumed_from"] == answer["next"] and answer["next"]["boot"] == answer["boot"]
