"""One benchmark run (one client count) on a cluster, and what it measured."""
from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

from rmi_kv.wire.client import KeyValueClient
from . import probe
from .reference import ReferenceCluster
from .stats import LatencyHistogram
from .workload import Observer, WorkerResult, WorkerSpec, filler_text, key_name, run_processes, run_threads

#: the no-op run after a run with reads lasts as long as that run, capped at this many seconds,
NOOP_MAX_DURATION = 2.0
#: or, with --ops, does as many calls, capped at this many
NOOP_MAX_OPS = 10_000


@dataclass(frozen=True)
class Workload:
    """The settings every run of one benchmark shares."""

    duration: Optional[float]
    ops: Optional[int]
    write_ratio: float
    value_size: int
    keys: int
    key_prefix: str
    seed: int
    mode: str  # "processes" or "threads"
    timeout: float
    replica: Optional[str]  # None: clients spread over every replica
    tls_dir: Optional[str] = None


@dataclass
class Target:
    """The cluster under test, as the runs see it."""

    ns_host: str
    ns_port: int
    names: list
    client: KeyValueClient
    #: process name -> pid, for CPU accounting (empty for a cluster we did not start)
    pids: dict = field(default_factory=dict)


@dataclass
class RunSummary:
    """Everything one run measured, merged over its workers."""

    clients: int
    mode: str
    elapsed_s: float = 0.0
    put: LatencyHistogram = field(default_factory=LatencyHistogram)
    get: LatencyHistogram = field(default_factory=LatencyHistogram)
    #: no-op ping() calls (the summary of a no-op run)
    ping: LatencyHistogram = field(default_factory=LatencyHistogram)
    aborts: int = 0
    abort_attempts: int = 0
    outcome_unknown: int = 0
    errors: dict = field(default_factory=dict)
    counters_delta: dict = field(default_factory=dict)
    client_cpu_s: float = 0.0
    cluster_cpu_s: dict = field(default_factory=dict)
    #: CPU seconds of this (the benchmark's main) process; with --threads it includes the clients
    main_cpu_s: float = 0.0
    #: busy CPU seconds of the whole machine during the run (None where unknown)
    machine_cpu_s: Optional[float] = None
    #: wall seconds between the CPU snapshots (the timed window as the main process saw it)
    window_s: float = 0.0
    replicas_used: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)
    unavailable: bool = False
    digests: Optional[probe.DigestCheck] = None
    #: the no-op run with the same clients that followed this run (runs with reads only)
    noop: Optional["RunSummary"] = None
    #: the same run on the reference two-phase commit (with --reference)
    reference: Optional["RunSummary"] = None

    @property
    def retries(self) -> Optional[int]:
        """Conflict retries inside the coordinators: counted by the replicas when they
        report coordinated_retries; otherwise derived: every aborted attempt counts in
        coordinated_aborted, and those the clients never saw as an abort were retried."""
        if "coordinated_retries" in self.counters_delta:
            return self.counters_delta["coordinated_retries"]
        aborted = self.counters_delta.get("coordinated_aborted")
        return None if aborted is None else max(0, aborted - self.aborts)

    @property
    def others_cpu_s(self) -> Optional[float]:
        """CPU the machine spent on processes that are neither the cluster nor the benchmark
        (other people's work): a run where this is large measured a busy machine."""
        if self.machine_cpu_s is None or not self.cluster_cpu_s:
            return None
        workers = self.client_cpu_s if self.mode == "processes" else 0.0
        return max(0.0, self.machine_cpu_s - sum(self.cluster_cpu_s.values()) - workers - self.main_cpu_s)

    def ops_per_s(self, histogram: LatencyHistogram) -> float:
        return histogram.count / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def noop_ops_per_s(self) -> Optional[float]:
        """No-op calls per second of the no-op run; None without one, or when one of its
        clients failed (the figure would undercount)."""
        noop = self.noop
        if noop is None or noop.failures or not noop.ping.count:
            return None
        return noop.ops_per_s(noop.ping)

    @property
    def noop_p50_s(self) -> Optional[float]:
        """p50 latency of the no-op calls, where noop_ops_per_s is known."""
        return self.noop.ping.percentile(0.5) if self.noop_ops_per_s is not None else None

    @property
    def get_vs_noop(self) -> Optional[float]:
        """GET ops/s over no-op calls/s with the same clients: how close GETs come to the
        rate the replicas and the call path allow for a call that does nothing."""
        noop = self.noop_ops_per_s
        return self.ops_per_s(self.get) / noop if noop and self.get.count else None

    def vs_reference(self, kind: str) -> Optional[float]:
        """``kind`` ("put" or "get") ops/s over those of the same run on the reference
        two-phase commit; None without one, or when one of its clients failed."""
        reference = self.reference
        if reference is None or reference.failures:
            return None
        ours, theirs = getattr(self, kind), getattr(reference, kind)
        return self.ops_per_s(ours) / reference.ops_per_s(theirs) if ours.count and theirs.count else None


def targets_for(clients: int, names: list[str], replica: Optional[str]) -> list[str]:
    """Replica of each client: all the same one, or round-robin over every replica."""
    if replica is not None:
        return [replica] * clients
    ordered = sorted(names)
    return [ordered[index % len(ordered)] for index in range(clients)]


def specs_for(workload: Workload, clients: int, target: Target, noop: bool = False) -> list[WorkerSpec]:
    """One WorkerSpec per client; --ops is shared out, --duration applies to each;
    ``noop``: the clients call ping() instead of GET and PUT."""
    return _specs(workload, clients, target.names, target.ns_host, target.ns_port, noop)


def reference_specs_for(workload: Workload, clients: int, cluster: ReferenceCluster) -> list[WorkerSpec]:
    """The same clients as specs_for, each on the reference node in the place of its replica
    (with --replica, all on the first node)."""
    placed = dataclasses.replace(workload, replica=cluster.names[0]) if workload.replica else workload
    return [dataclasses.replace(spec, reference_uri=cluster.uris[spec.replica])
            for spec in _specs(placed, clients, cluster.names, "", 0, noop=False)]


def _specs(workload: Workload, clients: int, names: list[str], ns_host: str, ns_port: int,
           noop: bool) -> list[WorkerSpec]:
    replicas = targets_for(clients, names, workload.replica)
    specs = []
    for index, replica in enumerate(replicas):
        share = None
        if workload.ops is not None:
            share = workload.ops // clients + (1 if index < workload.ops % clients else 0)
        specs.append(WorkerSpec(index, ns_host, ns_port, replica, workload.timeout, share,
                                workload.duration if workload.ops is None else None, workload.write_ratio,
                                workload.value_size, workload.keys, workload.key_prefix, workload.seed,
                                workload.tls_dir, noop))
    return specs


def preload_batches(workload: Workload, batch_bytes: int = 1 << 20) -> Iterator[dict]:
    """Every key of the key space with a value, in batches of at most about ``batch_bytes``."""
    filler = filler_text(random.Random(workload.seed), workload.value_size)
    per_batch = max(1, min(500, batch_bytes // (workload.value_size + len(workload.key_prefix) + 12)))
    for first in range(0, workload.keys, per_batch):
        numbers = range(first, min(workload.keys, first + per_batch))
        yield {key_name(workload.key_prefix, n): (f"preload.{n}." + filler)[:workload.value_size] for n in numbers}


def preload(workload: Workload, client: KeyValueClient) -> int:
    """Give every key of the key space a value, in few transactions, so GETs find
    data and PUTs update existing keys (the steady state). Returns keys written."""
    for batch in preload_batches(workload):
        client.transaction(batch)
    return workload.keys


class CpuWindow(Observer):
    """Snapshots CPU use (cluster, this process, the machine) when the timed window
    opens and closes, and passes progress on to ``tick``."""

    def __init__(self, pids: dict, tick: Callable[[int], None]) -> None:
        self.pids, self.tick = pids, tick
        self.before: tuple = ()
        self.after: tuple = ()

    def _snapshot(self) -> tuple:
        return time.monotonic(), probe.cpu_snapshot(self.pids), time.process_time(), probe.machine_cpu_seconds()

    def started(self) -> None:
        self.before = self._snapshot()

    def progress(self, done: int) -> None:
        self.tick(done)

    def finished(self) -> None:
        self.after = self._snapshot()

    def fill(self, summary: "RunSummary") -> None:
        """Put the CPU figures of the window into ``summary``."""
        if not self.before or not self.after:
            return
        summary.window_s = self.after[0] - self.before[0]
        summary.cluster_cpu_s = probe.cpu_delta(self.before[1], self.after[1])
        summary.main_cpu_s = self.after[2] - self.before[2]
        if self.before[3] is not None and self.after[3] is not None:
            summary.machine_cpu_s = self.after[3] - self.before[3]


class Ticks(Observer):
    """Passes a runner's progress on to ``tick`` (and measures nothing)."""

    def __init__(self, tick: Callable[[int], None]) -> None:
        self.tick = tick

    def progress(self, done: int) -> None:
        self.tick(done)


def _runner(workload: Workload) -> Callable[[list[WorkerSpec], Observer], list[WorkerResult]]:
    return run_processes if workload.mode == "processes" else run_threads


def run_point(workload: Workload, clients: int, target: Target, tick: Callable[[int], None]) -> RunSummary:
    """Run ``clients`` workers once; measure around the run; check the digests after."""
    before_status = probe.counters(target.client.status())
    specs = specs_for(workload, clients, target)
    window = CpuWindow(target.pids, tick)
    results = _runner(workload)(specs, window)
    summary = merge(clients, workload.mode, results)
    window.fill(summary)
    summary.digests = probe.check_digests(target.client)
    after_status = probe.counters(target.client.status())
    summary.counters_delta = {name: after_status[name] - before_status[name]
                              for name in before_status if name in after_status}
    return summary


def run_reference(workload: Workload, clients: int, cluster: ReferenceCluster,
                  tick: Callable[[int], None]) -> RunSummary:
    """The run of ``clients`` workers again, on the reference two-phase commit: what
    Pyro5 and this machine allow for the same protocol with nothing else around it."""
    window = CpuWindow(cluster.pids, tick)
    results = _runner(workload)(reference_specs_for(workload, clients, cluster), window)
    summary = merge(clients, workload.mode, results)
    window.fill(summary)
    summary.digests = cluster.check_digests()
    return summary


def wants_noop(workload: Workload) -> bool:
    """Runs with reads are followed by a no-op run: GETs are read against it."""
    return workload.write_ratio < 1.0


def noop_workload(workload: Workload) -> Workload:
    """The workload of the no-op run: the same mode and replica choice, for a short
    window (the run's duration or ops count, capped)."""
    duration = None if workload.duration is None else min(workload.duration, NOOP_MAX_DURATION)
    ops = None if workload.ops is None else min(workload.ops, NOOP_MAX_OPS)
    return dataclasses.replace(workload, duration=duration, ops=ops)


def run_noop(workload: Workload, clients: int, target: Target, tick: Callable[[int], None]) -> RunSummary:
    """``clients`` workers calling the no-op ping() through the replicas a run with
    ``workload`` uses: the throughput of calls with no work behind them, measured now.
    It changes nothing, so it needs no digest check; its CPU is not measured."""
    short = noop_workload(workload)
    results = _runner(short)(specs_for(short, clients, target, noop=True), Ticks(tick))
    return merge(clients, workload.mode, results)


def merge(clients: int, mode: str, results: list[WorkerResult]) -> RunSummary:
    """Add up the workers' results; elapsed runs from the first start to the last end."""
    summary = RunSummary(clients, mode)
    ran = [result for result in results if result.ended > 0]
    if ran:
        summary.elapsed_s = max(r.ended for r in ran) - min(r.started for r in ran)
    for result in results:
        summary.put.merge(result.put)
        summary.get.merge(result.get)
        summary.ping.merge(result.ping)
        summary.aborts += result.aborts
        summary.abort_attempts += result.abort_attempts
        summary.outcome_unknown += result.outcome_unknown
        for name, count in result.errors.items():
            summary.errors[name] = summary.errors.get(name, 0) + count
        summary.client_cpu_s += result.cpu_s
        summary.replicas_used[result.replica] = summary.replicas_used.get(result.replica, 0) + 1
        if result.failure:
            summary.failures.append(f"client {result.index}: {result.failure}")
            summary.unavailable = summary.unavailable or result.unavailable
    return summary

