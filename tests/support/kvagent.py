#!/usr/bin/env python3
"""A KeyValueClient driven by JSON lines, for a client on another host (namespace).

Started as ``python kvagent.py --ns-host H --ns-port P`` (inside a namespace,
with ``ip netns exec``). It prints ``{"ready": true}``, then reads one request
per line on stdin and answers one line on stdout:

    {"id": 1, "op": "put", "args": ["k", "v"], "replica": "replica2", "timeout": 5}
    {"id": 1, "ok": true, "result": null, "elapsed": 0.004}
    {"id": 2, "ok": false, "error": "TransactionAborted", "message": "...", "replicas": {...}, "elapsed": 1.0}

Requests run on a few threads, so answers may come in another order.

``Agent`` (below) starts it and turns the answers back into values and rmi_kv
exceptions. The module runs as a script: it needs nothing but rmi_kv.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

OPERATIONS = {"get", "put", "delete", "transaction", "keys", "ping", "status"}


def serve(ns_host: str, ns_port: int) -> int:
    from rmi_kv.wire.client import KeyValueClient
    from rmi_kv.errors import RmiKvError

    clients: dict[tuple, KeyValueClient] = {}
    clients_lock = threading.Lock()
    output_lock = threading.Lock()

    def answer(request: dict) -> None:
        reply: dict[str, Any] = {"id": request.get("id")}
        started = time.monotonic()
        try:
            op = request["op"]
            key = (request.get("replica"), float(request.get("timeout", 5.0)))
            if op not in OPERATIONS:
                raise ValueError(f"unknown operation {op!r}")
            with clients_lock:  # one client per (replica, timeout); it is safe across threads
                client = clients.get(key)
                if client is None:
                    client = clients[key] = KeyValueClient(ns_host, ns_port, replica=key[0], timeout=key[1])
            reply.update(ok=True, result=getattr(client, op)(*request.get("args", [])))
        except RmiKvError as error:
            reply.update(ok=False, error=type(error).__name__, message=str(error),
                         replicas=getattr(error, "replicas", None))
        except Exception as error:  # reported, never hidden
            reply.update(ok=False, error="unexpected", message=f"{type(error).__name__}: {error}")
        reply["elapsed"] = time.monotonic() - started
        with output_lock:
            print(json.dumps(reply, default=str), flush=True)

    print(json.dumps({"ready": True}), flush=True)
    # a few reused threads: a test may run several requests at once, and a KeyValueClient keeps
    # each thread's connections until it is closed (a thread per request would pile them up)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="kvagent") as pool:
        for line in sys.stdin:
            if line.strip():
                pool.submit(answer, json.loads(line))
    for client in clients.values():
        client.close()
    return 0


class Agent:
    """The test's side: start the agent with a command prefix, call it like a client."""

    def __init__(self, prefix: list[str], ns_host: str, ns_port: int, log_path: Path,
                 start_timeout: float = 30.0) -> None:
        command = prefix + [sys.executable, str(Path(__file__).resolve()), "--ns-host", ns_host,
                            "--ns-port", str(ns_port)]
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                        env=dict(os.environ), start_new_session=True)
        self._lines: queue.Queue = queue.Queue()  # lines without an id (the "ready" line)
        self._replies: dict[int, dict] = {}
        self._requests: dict[int, dict] = {}
        self._answered = threading.Condition()
        self._ended = False
        self._reader = threading.Thread(target=self._read, name="kvagent-output", daemon=True)
        self._reader.start()
        self._next_id = 0
        self.last_elapsed: Optional[float] = None
        first = self._next_line(start_timeout)
        if first is None or not first.get("ready"):
            self.close()
            raise RuntimeError(f"the client agent did not start: {first}; see {log_path}")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                line = {"garbage": raw.decode("utf-8", "replace")}
            if isinstance(line.get("id"), int):
                with self._answered:
                    self._replies[line["id"]] = line
                    self._answered.notify_all()
            else:
                self._lines.put(line)
        self._lines.put(None)
        with self._answered:
            self._ended = True
            self._answered.notify_all()

    def _next_line(self, timeout: float) -> Optional[dict]:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def submit(self, op: str, *args: Any, replica: Optional[str] = None, timeout: float = 5.0) -> int:
        """Start ``op`` on the agent's client (on one of its threads); returns its id for ``result``."""
        with self._answered:
            self._next_id += 1
            number = self._next_id
        request = {"id": number, "op": op, "args": list(args), "replica": replica, "timeout": timeout}
        self._requests[number] = request
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(request) + "\n").encode())
        self.process.stdin.flush()
        return number

    def result(self, number: int) -> Any:
        """Wait for the answer to request ``number``; raise the rmi_kv error it got (with ``.elapsed``)."""
        from rmi_kv import errors

        request = self._requests.pop(number)
        # a client call may connect, look up again and call: a few timeouts at most
        deadline = time.monotonic() + 4 * request["timeout"] + 10.0
        with self._answered:
            while number not in self._replies and not self._ended and time.monotonic() < deadline:
                self._answered.wait(max(0.0, deadline - time.monotonic()))
            reply = self._replies.pop(number, None)
        if reply is None:
            raise RuntimeError(f"the client agent gave no answer to {request}; see {self.log_path}")
        self.last_elapsed = reply["elapsed"]
        if reply["ok"]:
            return reply["result"]
        cls = getattr(errors, reply["error"], None)
        if not (isinstance(cls, type) and issubclass(cls, errors.RmiKvError)):
            raise RuntimeError(f"{request['op']}{tuple(request['args'])} on {request['replica'] or 'any replica'} "
                               f"failed: {reply['message']}")
        if cls is errors.TransactionAborted:
            error = cls(reply["message"], replicas=reply.get("replicas") or {})
        else:
            error = cls(reply["message"])
        error.elapsed = reply["elapsed"]
        raise error

    def call(self, op: str, *args: Any, replica: Optional[str] = None, timeout: float = 5.0) -> Any:
        """Run ``op`` and wait for its answer."""
        return self.result(self.submit(op, *args, replica=replica, timeout=timeout))

    # convenience, in the order a test reads best: where, then what
    def put(self, replica: Optional[str], key: str, value: str, timeout: float = 5.0) -> None:
        return self.call("put", key, value, replica=replica, timeout=timeout)

    def get(self, replica: Optional[str], key: str, timeout: float = 5.0) -> Optional[str]:
        return self.call("get", key, replica=replica, timeout=timeout)

    def delete(self, replica: Optional[str], key: str, timeout: float = 5.0) -> bool:
        return self.call("delete", key, replica=replica, timeout=timeout)

    def status(self, replica: Optional[str] = None, timeout: float = 3.0) -> list[dict]:
        return self.call("status", replica=replica, timeout=timeout)

    def close(self) -> None:
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self._reader.join(timeout=2)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ns-host", required=True)
    parser.add_argument("--ns-port", type=int, required=True)
    args = parser.parse_args()
    return serve(args.ns_host, args.ns_port)


if __name__ == "__main__":
    sys.exit(main())
