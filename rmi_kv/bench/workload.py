"""The benchmark's clients: one loop of GETs and PUTs per worker (or of no-op
ping() calls, the throughput GETs are read against), run as threads of this
process or as separate processes.

Every worker has its own KeyValueClient, so its own connection (with
``--reference``, its own connection to a node of the reference two-phase
commit instead). It connects before the clock starts, and waits at a start
gate so all start together. It
times each operation with ``time.perf_counter`` into a histogram per kind,
counts aborts, unknown outcomes and other errors, and publishes how many
operations it has done in a shared slot for the progress bar.
"""
from __future__ import annotations

import multiprocessing
import random
import signal
import string
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, MutableSequence, Optional, Union

from rmi_kv.wire.client import KeyValueClient
from rmi_kv.errors import (NameServerUnavailable, OutcomeUnknown, ReplicaUnavailable, RmiKvError,
                      TransactionAborted)
from .reference import ReferenceClient
from .stats import LatencyHistogram

#: what a worker calls put, get and ping on
Client = Union[KeyValueClient, ReferenceClient]

#: a worker gives up after this many failures in a row of the "cluster is gone" kind
MAX_CONSECUTIVE_UNAVAILABLE = 50
#: how long workers may take to connect and reach the start gate
START_TIMEOUT = 120.0


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker does: where it connects and which operations it runs."""

    index: int
    ns_host: str
    ns_port: int
    replica: str
    timeout: float
    #: this worker's number of operations, or None to run for ``duration`` seconds
    ops: Optional[int]
    duration: Optional[float]
    write_ratio: float
    value_size: int
    keys: int
    key_prefix: str
    seed: int
    #: --tls-dir of the cluster (mutual TLS with the client certificate), or None
    tls_dir: Optional[str] = None
    #: call the replica's no-op ping() instead of GETs and PUTs (the write ratio, values
    #: and keys are then unused)
    noop: bool = False
    #: run against this node of the reference two-phase commit (reference.py) instead of
    #: rmi_kv; ``replica`` is then the node's name and the name server is unused
    reference_uri: Optional[str] = None


@dataclass
class WorkerResult:
    """What one worker measured (plain data: it crosses a process boundary)."""

    index: int
    replica: str
    put: LatencyHistogram = field(default_factory=LatencyHistogram)
    get: LatencyHistogram = field(default_factory=LatencyHistogram)
    #: the no-op ping() calls of a worker with ``noop`` set
    ping: LatencyHistogram = field(default_factory=LatencyHistogram)
    aborts: int = 0
    #: conflict retries the client saw: ``attempts - 1`` of each aborted write
    abort_attempts: int = 0
    outcome_unknown: int = 0
    errors: dict = field(default_factory=dict)
    #: time.monotonic() when the timed loop started and ended (system-wide clock on Linux)
    started: float = 0.0
    ended: float = 0.0
    #: CPU seconds this worker's thread used during the timed loop
    cpu_s: float = 0.0
    #: why the worker could not start or stopped early (None: it ran to the end)
    failure: Optional[str] = None
    #: the failure means the cluster could not be reached
    unavailable: bool = False


def key_name(prefix: str, number: int) -> str:
    return f"{prefix}{number}"


def make_value(filler: str, worker: int, sequence: int, size: int) -> str:
    """A value of exactly ``size`` characters that differs from write to write."""
    tag = f"{worker}.{sequence}."
    return (tag + filler)[:size] if size > len(tag) else filler[:size]


def filler_text(rng: random.Random, size: int) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits, k=size))


# ---------------------------------------------------------------- start gate
class Cancelled(Exception):
    """The run was called off before it started (a worker could not start)."""


class StartGate:
    """All workers start their clocks together: each says it is ready, then waits;
    the main process opens the gate once all are ready, or cancels it as soon as
    one fails or dies, so nobody waits for a worker that will never come.
    Built on multiprocessing primitives, which work between threads too."""

    def __init__(self, context: Any, parties: int) -> None:
        self.parties = parties
        self._ready = context.Value("i", 0)
        self._cancelled = context.Value("b", 0)
        self._open = context.Event()

    def arrive(self) -> None:
        """Worker: ready; wait for the gate. Raises Cancelled when the run is off."""
        with self._ready.get_lock():
            self._ready.value += 1
        if not self._open.wait(START_TIMEOUT) or self._cancelled.value:
            raise Cancelled("the run was called off before it started")

    def cancel(self) -> None:
        """Worker or main: call the run off (waiting workers return at once)."""
        self._cancelled.value = 1
        self._open.set()

    def open_when_ready(self, alive: Callable[[], bool], interval: float = 0.02) -> bool:
        """Main: open the gate once every worker is ready; False (and cancelled) if one
        failed or died first, or START_TIMEOUT passed."""
        deadline = time.monotonic() + START_TIMEOUT
        while self._ready.value < self.parties:
            if self._cancelled.value or not alive() or time.monotonic() > deadline:
                self.cancel()
                return False
            time.sleep(interval)
        self._open.set()
        return not self._cancelled.value


# ------------------------------------------------------------------ one worker
def run_worker(spec: WorkerSpec, counts: MutableSequence[int], gate: StartGate) -> WorkerResult:
    """Connect, wait at the gate with the others, run the loop; never raises."""
    result = WorkerResult(spec.index, spec.replica)
    client: Optional[Client] = None
    try:
        client = _client_for(spec)
        client.ping()  # connect now: the clock must not include set-up
        gate.arrive()
        _loop(client, spec, counts, result)
    except Cancelled as error:
        result.failure = str(error)
    except (ReplicaUnavailable, NameServerUnavailable) as error:
        result.failure, result.unavailable = f"{spec.replica}: {error}", True
        gate.cancel()
    except Exception as error:  # a bug or an unexpected error: report it, do not hang the others
        result.failure = f"{type(error).__name__}: {error}"
        gate.cancel()
    finally:
        if client is not None:
            client.close()
    return result


def _client_for(spec: WorkerSpec) -> Client:
    """The worker's own connection: to an rmi_kv replica, or to a reference node."""
    if spec.reference_uri is not None:
        return ReferenceClient(spec.reference_uri, spec.timeout)
    return KeyValueClient(spec.ns_host, spec.ns_port, replica=spec.replica, timeout=spec.timeout,
                          tls_dir=spec.tls_dir)


#: what a loop times next: the call, its arguments, and the histogram it goes into
NextCall = Callable[[int], tuple[Callable[..., Any], tuple, LatencyHistogram]]


def _loop(client: Client, spec: WorkerSpec, counts: MutableSequence[int], result: WorkerResult) -> None:
    """The timed loop of this worker's kind (GETs and PUTs, or no-op calls)."""
    next_call = _noops(client, result) if spec.noop else _operations(client, spec, result)
    _timed_loop(next_call, spec, counts, result)


def _operations(client: Client, spec: WorkerSpec, result: WorkerResult) -> NextCall:
    """GETs and PUTs of random keys, a PUT with probability ``write_ratio``."""
    rng = random.Random(spec.seed * 1_000_003 + spec.index)
    filler = filler_text(rng, spec.value_size)
    put, get = client.put, client.get

    def next_call(done: int) -> tuple[Callable[..., Any], tuple, LatencyHistogram]:
        key = key_name(spec.key_prefix, rng.randrange(spec.keys))
        if rng.random() < spec.write_ratio:
            return put, (key, make_value(filler, spec.index, done, spec.value_size)), result.put
        return get, (key,), result.get

    return next_call


def _noops(client: Client, result: WorkerResult) -> NextCall:
    """The replica's no-op ping() through the same client: a call with no work behind it."""
    call = (client.ping, (), result.ping)
    return lambda done: call


def _timed_loop(next_call: NextCall, spec: WorkerSpec, counts: MutableSequence[int], result: WorkerResult) -> None:
    """Time each call (and only the call) until ``ops`` calls or ``duration`` seconds;
    both kinds of loop share it, so their figures compare like for like."""
    perf, clock = time.perf_counter, time.monotonic
    unavailable_in_a_row = 0
    cpu_started = time.thread_time()
    result.started = clock()
    deadline = result.started + spec.duration if spec.duration is not None else None
    done = 0
    while (done < spec.ops) if spec.ops is not None else (clock() < deadline):
        call, args, histogram = next_call(done)
        started = perf()
        try:
            call(*args)
        except Exception as error:  # counted by kind; the loop goes on
            unavailable_in_a_row = unavailable_in_a_row + 1 if _count_error(result, error) else 0
            if unavailable_in_a_row >= MAX_CONSECUTIVE_UNAVAILABLE:
                result.failure, result.unavailable = f"{spec.replica}: {error}", True
                break
        else:
            histogram.record(perf() - started)
            unavailable_in_a_row = 0
        done += 1
        counts[spec.index] = done
    result.ended = clock()
    result.cpu_s = time.thread_time() - cpu_started


def _count_error(result: WorkerResult, error: BaseException) -> bool:
    """Count one failed operation; True when it says the cluster is unreachable."""
    if isinstance(error, TransactionAborted):
        result.aborts += 1
        attempts = getattr(error, "attempts", 1)
        result.abort_attempts += max(0, int(attempts) - 1) if isinstance(attempts, int) else 0
        return False
    if isinstance(error, OutcomeUnknown):
        result.outcome_unknown += 1
        return False
    name = type(error).__name__
    result.errors[name] = result.errors.get(name, 0) + 1
    return isinstance(error, (ReplicaUnavailable, NameServerUnavailable)) or not isinstance(error, RmiKvError)


# ------------------------------------------------------------------- runners
class Observer:
    """What a runner reports while it runs: the timed window opened (every worker
    passed the start gate), progress (operations done so far), the window closed."""

    def started(self) -> None:
        pass

    def progress(self, done: int) -> None:
        pass

    def finished(self) -> None:
        pass


def run_threads(specs: list[WorkerSpec], observer: Observer, interval: float = 0.1) -> list[WorkerResult]:
    """Run the workers as threads of this process (they share its GIL)."""
    counts = [0] * len(specs)
    gate = StartGate(multiprocessing.get_context(), len(specs))
    results: list[Optional[WorkerResult]] = [None] * len(specs)

    def body(spec: WorkerSpec) -> None:
        results[spec.index] = run_worker(spec, counts, gate)

    threads = [threading.Thread(target=body, args=(spec,), name=f"bench-client-{spec.index}", daemon=True)
               for spec in specs]
    for thread in threads:
        thread.start()
    gate.open_when_ready(lambda: all(thread.is_alive() for thread in threads))
    observer.started()
    while any(thread.is_alive() for thread in threads):
        time.sleep(interval)
        observer.progress(sum(counts))
    observer.finished()
    observer.progress(sum(counts))
    return [result for result in results if result is not None]


def _process_main(spec: WorkerSpec, counts: Any, gate: StartGate, queue: Any) -> None:
    """Entry point of a worker process: run the worker, send its result back.
    Ctrl-C is the parent's to handle: it stops the workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        result = run_worker(spec, counts, gate)
    except BaseException as error:  # even an import failing: the parent must hear of it
        gate.cancel()
        result = WorkerResult(spec.index, spec.replica, failure=f"{type(error).__name__}: {error}")
    queue.put(result)


def process_context() -> multiprocessing.context.BaseContext:
    """forkserver where there is one (fast, and no fork of a process with threads), else spawn."""
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if "forkserver" in methods:
        context.set_forkserver_preload(["rmi_kv.bench.workload"])
    return context


def run_processes(specs: list[WorkerSpec], observer: Observer, interval: float = 0.1) -> list[WorkerResult]:
    """Run each worker in its own process (each with its own interpreter and GIL)."""
    context = process_context()
    counts = context.Array("q", len(specs), lock=False)
    gate = StartGate(context, len(specs))
    queue = context.Queue()
    processes = [context.Process(target=_process_main, args=(spec, counts, gate, queue),
                                 name=f"bench-client-{spec.index}", daemon=True) for spec in specs]
    for process in processes:
        process.start()
    try:
        gate.open_when_ready(lambda: all(process.is_alive() for process in processes))
        observer.started()
        results = _collect(processes, queue, len(specs), lambda: observer.progress(sum(counts)), interval)
        observer.finished()
        observer.progress(sum(counts))
    except BaseException:
        _stop(processes, grace=0.0)
        raise
    _stop(processes, grace=5.0)
    return results


def _stop(processes: list, grace: float) -> None:
    """Wait up to ``grace`` seconds in all for the workers to exit, then kill the rest."""
    deadline = time.monotonic() + grace
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join(5)


def _collect(processes: list, queue: Any, expected: int, on_wait: Callable[[], None],
             interval: float) -> list[WorkerResult]:
    """Results from the queue until every worker answered or every process is gone."""
    import queue as queue_module

    results: list[WorkerResult] = []
    while len(results) < expected:
        try:
            results.append(queue.get(timeout=interval))
        except queue_module.Empty:
            if not any(process.is_alive() for process in processes):
                results += _drain(queue)
                break  # a worker died without answering
        on_wait()
    answered = {result.index for result in results}
    # (a result may arrive after its process has exited: _drain waits a little for it)
    for index, process in enumerate(processes):
        if index not in answered:
            results.append(WorkerResult(index, "?", failure=f"worker process ended with code {process.exitcode}"))
    return sorted(results, key=lambda result: result.index)


def _drain(queue: Any, wait: float = 1.0) -> list[WorkerResult]:
    """Whatever results are still on their way after the last worker process ended."""
    import queue as queue_module

    drained = []
    while True:
        try:
            drained.append(queue.get(timeout=wait))
        except queue_module.Empty:
            return drained
