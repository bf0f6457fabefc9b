"""A local cluster: a name server and replicas as child processes on 127.0.0.1.

Used by ``run_server.py --replicas N``, the demo, the benchmark and the
integration tests. Ports are chosen by the OS; each child says where it
listens on its first line of output. Every process started is stopped again,
whatever happens.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from rmi_kv.wire.client import KeyValueClient

READY_PATTERN = re.compile(r"ready at (\S+)")
START_TIMEOUT = 30.0


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05,
             what: str = "condition") -> Any:
    """Poll ``condition()`` until it returns something true, and return that; raise
    TimeoutError after ``timeout`` seconds (a condition that raises counts as not yet:
    the cluster may be in the middle of a restart)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            result = condition()
            if result:
                return result
            last = result
        except Exception as error:
            last = f"{type(error).__name__}: {error}"
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} did not hold within {timeout:g} s (last: {last})")
        time.sleep(interval)


class ChildProcess:
    """One child process whose first 'ready at' line we wait for."""

    def __init__(self, name: str, command: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.name = name
        self.command = command
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._log,
                                        stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self.address: Optional[str] = None
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read_output, name=f"{name}-output", daemon=True)
        self._reader.start()

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace")
            self._log.write(raw)
            self._log.flush()
            match = READY_PATTERN.search(line)
            if match and not self._ready.is_set():
                self.address = match.group(1)
                self._ready.set()
        self._ready.set()  # the process ended: stop waiting

    def wait_ready(self, timeout: float = START_TIMEOUT) -> str:
        """The address the child listens at, once it says so; RuntimeError,
        headed by the child's own error line, when it exits or takes too long."""
        if not self._ready.wait(timeout) or self.address is None:
            ended = self._ready.is_set()  # its output ended: it is exiting, so wait for its code
            code = self.wait_exit(5.0) if ended else self.process.poll()
            self.kill()
            tail = self.log_tail()
            reason = self.error_line(tail)
            what = (f"exited with code {code} before it was ready" if code is not None
                    else f"did not start within {timeout:g} s")
            headline = f"{self.name}: {reason} ({what})" if reason else f"{self.name} {what}"
            raise RuntimeError(f"{headline}; see {self.log_path}:\n{tail}")
        return self.address

    @staticmethod
    def error_line(log_text: str) -> Optional[str]:
        """The last 'error: ...' line a child wrote, without the prefix (None: there is none)."""
        for line in reversed(log_text.splitlines()):
            if line.startswith("error: "):
                return line[len("error: "):].strip()
        return None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, number: int) -> None:
        if self.alive():
            try:
                os.kill(self.process.pid, number)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        """SIGTERM, then SIGKILL if it does not leave in time; returns the exit code."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.process.returncode
        self._close()
        return code

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
            pass
        self._close()

    def wait_exit(self, timeout: float) -> Optional[int]:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def _close(self) -> None:
        self._reader.join(timeout=2)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


class LocalCluster:
    """A name server plus replicas ``replica1..N`` on 127.0.0.1."""

    def __init__(self, replicas: int = 5, data_dir: str | Path | None = None, ns_host: str = "127.0.0.1",
                 ns_port: int = 0, start_nameserver: bool = True, log_level: str = "INFO",
                 env: Optional[dict[str, str]] = None, replica_args: Iterable[str] = (),
                 tls_dir: str | Path | None = None, nameserver_storage: bool = True) -> None:
        self._tempdir = None
        if data_dir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="rmi_kv-")
            data_dir = self._tempdir.name
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.names = [f"replica{index}" for index in range(1, replicas + 1)]
        self.ns_host = ns_host
        self.ns_port = ns_port
        self.start_nameserver = start_nameserver
        self.log_level = log_level
        self.env = dict(os.environ if env is None else env)
        self.tls_dir = str(tls_dir) if tls_dir else None
        self._tls_args = ["--tls-dir", self.tls_dir] if self.tls_dir else []
        self.replica_args = list(replica_args) + self._tls_args
        self.nameserver_args = self._tls_args
        #: the name server keeps its registrations in a file (False: it restarts empty)
        self.nameserver_storage = nameserver_storage
        self.nameserver: Optional[ChildProcess] = None
        self.replicas: dict[str, ChildProcess] = {}

    # ------------------------------------------------------------ processes
    def start(self) -> "LocalCluster":
        try:
            if self.start_nameserver:
                self.start_ns()
            starting = [self.spawn_replica(name) for name in self.names]
            for child in starting:
                child.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def start_ns(self) -> ChildProcess:
        storage = ["--storage", str(self.data_dir / "nameserver.sqlite3")] if self.nameserver_storage else []
        command = [sys.executable, "-m", "rmi_kv.server.nameserver", "--host", self.ns_host,
                   "--port", str(self.ns_port), *storage, "--log-level", self.log_level, *self.nameserver_args]
        self.nameserver = ChildProcess("nameserver", command, self.data_dir / "nameserver.log", self.env)
        address = self.nameserver.wait_ready()
        self.ns_port = int(address.rsplit(":", 1)[1])
        return self.nameserver

    def spawn_replica(self, name: str, failpoints: Iterable[str] = (), extra_env: Optional[dict] = None,
                      data_dir: Optional[Path] = None, extra_args: Iterable[str] = ()) -> ChildProcess:
        """Start replica ``name`` without waiting for it to be ready (``extra_args``: options of its own)."""
        command = [sys.executable, "-m", "rmi_kv.server.main", "--name", name,
                   "--ns-host", self.ns_host, "--ns-port", str(self.ns_port), "--host", "127.0.0.1",
                   "--port", "0", "--data-dir", str(data_dir or self.data_dir / name),
                   "--log-level", self.log_level, *self.replica_args, *extra_args]
        for failpoint in failpoints:
            command += ["--failpoint", failpoint]
        env = dict(self.env)
        env.update(extra_env or {})
        child = ChildProcess(name, command, self.data_dir / f"{name}.log", env)
        self.replicas[name] = child
        return child

    def start_replica(self, name: str, failpoints: Iterable[str] = (), extra_env: Optional[dict] = None,
                      wait: bool = True) -> ChildProcess:
        child = self.spawn_replica(name, failpoints, extra_env)
        if wait:
            child.wait_ready()
        return child

    def restart_replica(self, name: str, failpoints: Iterable[str] = ()) -> ChildProcess:
        old = self.replicas.get(name)
        if old is not None and old.alive():
            old.stop()
        return self.start_replica(name, failpoints)

    def restart_all(self, replica_args: Optional[Iterable[str]] = None) -> None:
        """Stop every replica (cleanly, all at once), then start them all again and wait until each is
        ready; with ``replica_args``, every replica starts with those options from now on."""
        self._stop_replicas()
        if replica_args is not None:
            self.replica_args = list(replica_args) + self._tls_args
        try:
            starting = [self.spawn_replica(name) for name in self.names]
            for child in starting:
                child.wait_ready()
        except BaseException:
            self._stop_replicas()
            raise

    def kill_replica(self, name: str) -> None:
        self.replicas[name].kill()

    def stop_replica(self, name: str) -> Optional[int]:
        return self.replicas[name].stop()

    def _stop_replicas(self) -> None:
        """SIGTERM to every replica at once; SIGKILL to one that has not left within 10 s."""
        for child in list(self.replicas.values()):
            child.signal(signal.SIGCONT)
            child.signal(signal.SIGTERM)
        for child in list(self.replicas.values()):
            if child.wait_exit(10) is None:
                child.kill()
            else:
                child._close()

    def stop(self) -> None:
        """Stop every process this cluster started (replicas first), and remove temporary data."""
        self._stop_replicas()
        if self.nameserver is not None:
            self.nameserver.stop()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ---------------------------------------------------------------- use
    def client(self, replica: Optional[str] = None, timeout: float = 10.0) -> KeyValueClient:
        """A client in this process (with TLS, this process then speaks TLS only)."""
        return KeyValueClient(self.ns_host, self.ns_port, replica=replica, timeout=timeout, tls_dir=self.tls_dir)

    def wait_for(self, condition, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
        """Poll ``condition()`` until it returns something true; raise TimeoutError otherwise."""
        return wait_for(condition, timeout, interval, what)

    def logs(self) -> str:
        """The tail of every process's log, for a failing test's report."""
        parts = []
        for child in ([self.nameserver] if self.nameserver else []) + list(self.replicas.values()):
            parts.append(f"----- {child.name} ({child.log_path}) -----\n{child.log_tail(40)}")
        return "\n".join(parts)
