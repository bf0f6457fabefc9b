"""Two versions of the code measured at the same moment: the ratio of a change.

``python -m rmi_kv.bench.sidebyside BEFORE AFTER`` starts one cluster from
each checkout (``run_server.py --replicas N --with-nameserver`` run in that
checkout's directory, so each imports its own ``rmi_kv``), runs the same
workload against both at once, and prints each round's figures and the
ratio AFTER / BEFORE, then their medians. Runs made one after the other on a
shared machine drift by up to a factor of 1.5 within a minute; two clusters
measured together see the same machine. With the same code on both sides
the ratio shows the method's own spread (a few percent); compare against it.

Workloads (``--workload``):

- ``participant``: ``--calls`` protocol calls, one after the other, to one
  replica, each the ``doCommit`` of the previous transaction and the
  ``canCommit`` of a new one, sent as another replica's coordinator sends
  them; the replica's CPU per call.
- ``put``: ``--calls`` PUTs of one client through one replica; the CPU of
  the whole cluster per PUT, and the wall time per PUT.
- ``clients``: ``python -m rmi_kv.bench --clients C --duration D``, PUT
  only, against each cluster (from its own checkout); the cluster's CPU per
  PUT, PUT/s and p50.

CPU times are read from ``/proc`` (Linux). Exit code 0, or 2 for a usage
error, 1 when a cluster or a run failed.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import Pyro5.api

from rmi_kv.bench import probe
from rmi_kv.core import txid as txids
from rmi_kv.wire.naming import connect_nameserver, list_members
from rmi_kv.wire.pyro import configure_pyro

VALUE = "v" * 100


def cpu_seconds(pids: Sequence[int]) -> float:
    """User and system CPU of ``pids`` so far (processes gone count nothing)."""
    return sum(seconds for seconds in map(probe.cpu_seconds, pids) if seconds is not None)


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        try:
            children = Path(f"/proc/{todo.pop()}/task").iterdir()
            kids = [int(kid) for task in children for kid in (task / "children").read_text().split()]
        except OSError:
            kids = []
        found += kids
        todo += kids
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Side:
    """One checkout's cluster: started in that checkout's directory, on a port of its own."""

    def __init__(self, label: str, checkout: Path, replicas: int, scratch: Path) -> None:
        self.label, self.checkout, self.replicas = label, checkout, replicas
        self.port = free_port()
        self.log = scratch / f"{label}.log"
        environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        self.process = subprocess.Popen(
            [sys.executable, "run_server.py", "--replicas", str(replicas), "--with-nameserver",
             "--ns-port", str(self.port), "--data-dir", str(scratch / label), "--log-level", "WARNING"],
            cwd=checkout, env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=self.log.open("w"))

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until every replica is registered and serving (a new one may still be catching up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the {self.label} cluster ended: {self.log.read_text()[-2000:]}")
            try:
                members = self.members()
                if len(members) >= self.replicas and all(self._serving(uri) for uri in members.values()):
                    return
            except Exception:  # the name server or a replica is not up yet
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the {self.label} cluster did not come up in {timeout:g} s")

    @staticmethod
    def _serving(uri: str) -> bool:
        with Pyro5.api.Proxy(uri) as proxy:
            return bool(proxy.status().get("serving"))

    def replica_pids(self) -> list[int]:
        return descendants(self.process.pid)

    def members(self) -> dict[str, str]:
        """Replica name -> URI, as this cluster's name server lists them."""
        with connect_nameserver("127.0.0.1", self.port) as nameserver:
            return list_members(nameserver)

    def uri(self, name: str) -> str:
        return self.members()[name]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def participant_calls(side: Side, calls: int) -> dict:
    """``calls`` batches of a doCommit and a canCommit to replica2, as replica1's coordinator sends them."""
    names = [f"replica{number}" for number in range(1, side.replicas + 1)]
    target = Pyro5.api.Proxy(side.uri("replica2"))
    status = target.status()
    epoch = (status.get("failover") or {}).get("epoch") or {}
    extra = [epoch["number"]] if "number" in epoch else []
    pid = next(pid for pid in side.replica_pids() if "--name replica2 " in Path(f"/proc/{pid}/cmdline")
               .read_text().replace("\0", " "))
    boot = os.urandom(4).hex()
    previous: Optional[str] = None

    def call(number: int) -> None:
        nonlocal previous
        txid = txids.make("replica1", boot, number, time.time_ns() // 1000)
        messages = ([["doCommit", previous]] if previous else []) + \
            [["canCommit", txid, {f"key{number % 1000}": VALUE}, "replica1", names, *extra]]
        answers = json.loads(target.batch(json.dumps(messages)))
        if not all(ok for ok, _ in answers):
            raise RuntimeError(f"replica2 refused a message: {answers}")
        previous = txid

    for number in range(min(200, calls)):
        call(number)
    before = cpu_seconds([pid])
    for number in range(1000, 1000 + calls):
        call(number)
    spent = cpu_seconds([pid]) - before
    target.batch(json.dumps([["doCommit", previous]]))
    return {"cpu_us_per_call": 1e6 * spent / calls}


def put_calls(side: Side, calls: int) -> dict:
    """``calls`` PUTs of one client through replica1; the cluster's CPU per PUT."""
    proxy = Pyro5.api.Proxy(side.uri("replica1"))
    for number in range(min(200, calls)):
        proxy.put(f"key{number % 1000}", VALUE)
    pids = side.replica_pids()
    before, started = cpu_seconds(pids), time.perf_counter()
    for number in range(calls):
        proxy.put(f"key{number % 1000}", VALUE)
    elapsed, spent = time.perf_counter() - started, cpu_seconds(pids) - before
    return {"cpu_us_per_put": 1e6 * spent / calls, "wall_ms_per_put": 1e3 * elapsed / calls}


def bench_clients(side: Side, clients: int, duration: float, scratch: Path, round_: int) -> dict:
    """The benchmark (from ``side``'s checkout) with ``clients`` clients; the cluster's CPU per PUT."""
    out = scratch / f"{side.label}-{round_}.json"
    pids = side.replica_pids()
    before = cpu_seconds(pids)
    result = subprocess.run(
        [sys.executable, "-m", "rmi_kv.bench", "--ns-port", str(side.port), "--clients", str(clients),
         "--duration", str(duration), "--write-ratio", "1.0", "--value-size", "100", "--no-preload",
         "--no-progress", "--json", str(out)], cwd=side.checkout, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=duration + 300)
    spent = cpu_seconds(pids) - before
    if result.returncode != 0:
        raise RuntimeError(f"the benchmark of {side.label} failed: {(result.stdout + result.stderr)[-2000:]}")
    run = json.loads(out.read_text())["runs"][0]
    return {"cpu_ms_per_put": 1e3 * spent / max(1, run["ops"]), "put_per_s": run["ops_per_s"],
            "p50_ms": run["put"]["p50_ms"]}


def at_once(work: Callable[[Side], dict], sides: Sequence[Side]) -> list[dict]:
    """``work`` on every side at the same moment (threads: each waits on its own cluster)."""
    results: list = [None] * len(sides)

    def run(index: int) -> None:
        try:
            results[index] = work(sides[index])
        except Exception as error:  # reported below, after both ended
            results[index] = error

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(sides))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results


def ratios(before: dict, after: dict) -> dict:
    """after / before for every figure both have."""
    return {key: after[key] / before[key] for key in before if key in after and before[key]}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rmi_kv.bench.sidebyside",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, help="checkout of the code before the change")
    parser.add_argument("after", type=Path, help="checkout of the code after it (the same one: the method's spread)")
    parser.add_argument("--workload", choices=("participant", "put", "clients"), default="participant")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default %(default)s)")
    parser.add_argument("--calls", type=int, default=2000, help="calls or PUTs per round (default %(default)s)")
    parser.add_argument("--clients", type=int, default=16, help="benchmark clients, clients workload")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per run, clients workload")
    parser.add_argument("--replicas", type=int, default=5, help="replicas per cluster (default %(default)s)")
    parser.add_argument("--json", type=Path, help="write every round's figures and the medians here")
    args = parser.parse_args(argv)
    configure_pyro()
    for checkout in (args.before, args.after):
        if not (checkout / "run_server.py").is_file():
            parser.error(f"{checkout} is not a checkout of rmi_kv (no run_server.py)")
    if args.rounds < 1 or args.calls < 1 or args.replicas < 2:
        parser.error("--rounds and --calls must be at least 1, --replicas at least 2")
    rounds = []
    with tempfile.TemporaryDirectory(prefix="rmi_kv-sidebyside-") as directory:
        scratch = Path(directory)
        sides = [Side("before", args.before.resolve(), args.replicas, scratch),
                 Side("after", args.after.resolve(), args.replicas, scratch)]
        try:
            for side in sides:
                side.wait_ready()
            for number in range(args.rounds):
                if args.workload == "participant":
                    before, after = at_once(lambda side: participant_calls(side, args.calls), sides)
                elif args.workload == "put":
                    before, after = at_once(lambda side: put_calls(side, args.calls), sides)
                else:
                    before, after = at_once(lambda side: bench_clients(side, args.clients, args.duration,
                                                                       scratch, number), sides)
                rounds.append({"before": before, "after": after, "ratio": ratios(before, after)})
                print(f"round {number + 1}: " + "  ".join(
                    f"{key} {before[key]:.2f} -> {after[key]:.2f} ({rounds[-1]['ratio'][key]:.3f})"
                    for key in before), flush=True)
        except Exception as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        finally:
            for side in sides:
                side.stop()
    medians = {key: statistics.median(round_["ratio"][key] for round_ in rounds) for key in rounds[0]["ratio"]}
    print("medians of the per-round ratios, after / before: " +
          ", ".join(f"{key} {value:.3f}" for key, value in medians.items()))
    if args.json is not None:
        args.json.write_text(json.dumps({"workload": args.workload, "rounds": rounds, "medians": medians}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
