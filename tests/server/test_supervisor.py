"""run_server.py as an operator runs it: options that contradict each other,
and the supervisor of a local cluster (--replicas N --with-nameserver)."""
from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from support.checks import wait_until

ROOT = Path(__file__).resolve().parents[2]
RUN_SERVER = str(ROOT / "run_server.py")


@pytest.mark.parametrize("options, message", [
    (["--name", "x", "--replicas", "2"], "--name is for one replica; --replicas N starts replica1..N"),
    (["--replicas", "2", "--port", "9999", "--advertise", "10.0.0.1"], "--port and --advertise are for one replica"),
    (["--name", "x", "--with-nameserver"], "--with-nameserver goes with --replicas N"),
    (["--remove", "replica5", "--replicas", "2"], "--remove takes a stopped replica out and exits; it does not go "
                                                  "with --replicas"),
    (["--replicas", "0"], "argument --replicas: must be a whole number from 1 to 100, not 0"),
    (["--name", "x", "--ns-port", "0"], "--ns-port 0 (let the OS choose) goes with --with-nameserver"),
])
def test_options_that_contradict_each_other_are_a_usage_error(tmp_path, options, message):
    done = subprocess.run([sys.executable, RUN_SERVER, "--ns-port", "1", *options], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert list(tmp_path.iterdir()) == [], "nothing was started or created"


def processes_mentioning(text: str) -> list[int]:
    """PIDs of the processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class Supervisor:
    """``run_server.py --replicas N --with-nameserver`` with its output read as it comes."""

    def __init__(self, data_dir: Path, *options: str) -> None:
        self.data_dir = data_dir
        self.process = subprocess.Popen(
            [sys.executable, RUN_SERVER, "--replicas", "1", "--with-nameserver", "--ns-port", "0",
             "--data-dir", str(data_dir), *options], cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        self.lines: "queue.Queue[tuple[str, str]]" = queue.Queue()
        for name, stream in (("out", self.process.stdout), ("err", self.process.stderr)):
            threading.Thread(target=self._read, args=(name, stream), daemon=True).start()
        self.seen: list[tuple[str, str]] = []

    def _read(self, name: str, stream) -> None:
        for line in stream:
            self.lines.put((name, line.rstrip("\n")))

    def wait_line(self, stream: str, text: str, timeout: float = 30.0) -> str:
        def found():
            while not self.lines.empty():
                self.seen.append(self.lines.get())
            return next((line for name, line in self.seen if name == stream and text in line), None)

        return wait_until(found, timeout, f"{text!r} on std{stream} (so far: {self.seen[-10:]})")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for pid in processes_mentioning(str(self.data_dir)):
            os.kill(pid, signal.SIGKILL)


def test_the_supervisor_says_when_its_name_server_dies_and_how_to_start_it(tmp_path):
    supervisor = Supervisor(tmp_path / "cluster")
    try:
        line = supervisor.wait_line("out", "name server")
        port = line.split()[2].rsplit(":", 1)[1]
        supervisor.wait_line("out", "all running")
        nameserver = processes_mentioning(f"{tmp_path / 'cluster' / 'nameserver.sqlite3'}")
        assert len(nameserver) == 1
        os.kill(nameserver[0], signal.SIGKILL)
        warning = supervisor.wait_line("err", "warning: the name server exited")
        assert f"python run_nameserver.py --host 127.0.0.1 --port {port} --storage " in warning
        assert supervisor.process.poll() is None, "the supervisor and its replicas keep running"
    finally:
        supervisor.stop()
    assert supervisor.process.returncode == 0
    assert processes_mentioning(str(tmp_path / "cluster")) == []


def test_a_name_server_that_cannot_listen_is_the_headline(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, RUN_SERVER, "--replicas", "1", "--with-nameserver",
                               "--ns-port", str(port), "--data-dir", str(tmp_path / "cluster")],
                              cwd=ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 4
    headline = done.stderr.splitlines()[0]
    assert headline.startswith(f"error: nameserver: cannot listen on 127.0.0.1:{port}: "), headline
    assert "in use" in headline and "did not start within" not in headline
    assert processes_mentioning(str(tmp_path / "cluster")) == []
