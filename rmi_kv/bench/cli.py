"""The command line of the benchmark: ``python -m rmi_kv.bench`` and ``run_client.py bench``."""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Iterator, Optional, Sequence

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from rmi_kv import __version__, options
from rmi_kv.wire.client import KeyValueClient
from rmi_kv.config import DEFAULT_NS_HOST, DEFAULT_NS_PORT
from rmi_kv.errors import RmiKvError
from . import baselines as baseline_probe
from . import probe
from .baselines import FLOOR_EXPLANATION
from .report import clients_word, run_json, show, write_chart
from .reference import ReferenceCluster
from .runner import (NOOP_MAX_DURATION, NOOP_MAX_OPS, Target, Workload, noop_workload, preload, preload_batches,
                     run_noop, run_point, run_reference, wants_noop)

EXIT_OK, EXIT_DIVERGED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 4, 130
DEFAULT_DURATION = 10.0
DEFAULT_MODE = "processes"

DESCRIPTION = f"""\
Measure rmi_kv: PUT and GET throughput, p50/p95/p99 latency, aborts and
retries, against two baselines measured in the same run on the same cluster:
the round trip of a no-op Pyro5 call to a replica, and one forced log write
(a SQLite commit with WAL and synchronous=FULL in the cluster's data
directory; a raw os.fsync too). Each run with reads is followed by a short
run of no-op ping() calls with the same clients (at most {NOOP_MAX_DURATION:g} s
or {NOOP_MAX_OPS:,} calls): GET throughput is also given as a ratio to that.

{textwrap.fill(FLOOR_EXPLANATION, 78)}

Starts its own cluster (a name server and --replicas replicas, data in a
temporary directory) unless --ns-host/--ns-port name a running one. After
each run every replica's digest must be equal: a run that diverged fails.

--reference then runs the same clients once more against a bare two-phase
commit on plain Pyro5 (rmi_kv.bench.reference: the same calls and forced
writes per PUT, one os.fsync each, no-wait key locks, nothing else), started
on this machine: the figures it reaches are what Pyro5 and the machine allow
for this protocol, and rmi_kv's throughput is also given as a ratio to them.

Clients run as separate processes by default (--processes): each has its own
interpreter, GIL and connection, like real clients, so the tool's own GIL
never caps the load. --threads runs them as threads of this process (one GIL:
the client side gets one core at most). Either way, on a machine with few
cores the clients compete with the replicas for CPU: the output says how much
CPU the clients, the cluster and other processes used in each run.

Exit codes: 0 success, 1 replicas differ after a run, 2 usage error,
4 cluster unavailable, 130 interrupted."""


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog or _default_prog(), description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cluster = parser.add_argument_group("cluster")
    cluster.add_argument("--ns-host", help=f"use the running cluster of this name server (port default {DEFAULT_NS_PORT})")
    cluster.add_argument("--ns-port", type=options.port(),
                         help=f"use the running cluster of the name server on this port "
                              f"(host default {DEFAULT_NS_HOST})")
    cluster.add_argument("--replicas", type=int, default=5, metavar="N",
                         help="replicas of the cluster this tool starts (default %(default)s)")
    cluster.add_argument("--data-dir", metavar="DIR", help="data directory of the cluster this tool starts, and "
                         "where the forced-write baseline runs (default: a temporary directory)")
    cluster.add_argument("--tls-dir", metavar="DIR", help="mutual TLS: the cluster this tool starts uses the "
                         "certificates in DIR, and every client presents the client certificate from DIR")
    cluster.add_argument("--early-reply", action="store_true",
                         help="the replicas this tool starts answer a write once its COMMIT decision is forced "
                         "(run_server.py --early-reply); a running cluster has its own setting")
    cluster.add_argument("--reference", action="store_true",
                         help="after the runs, run the same clients against a bare two-phase commit on plain "
                         "Pyro5 with one os.fsync per forced write (--replicas nodes started on this machine; "
                         "no SQLite, no batching, no recovery), and give rmi_kv's throughput as a ratio to it")
    load = parser.add_argument_group("workload")
    load.add_argument("--clients", type=int, default=4, metavar="N",
                      help="concurrent clients, each with its own connection (default %(default)s)")
    load.add_argument("--sweep", metavar="N,N,...", help="one run per client count, e.g. 1,4,16 (overrides --clients)")
    length = load.add_mutually_exclusive_group()
    length.add_argument("--duration", type=float, metavar="S",
                        help=f"seconds each run lasts (default {DEFAULT_DURATION:g})")
    length.add_argument("--ops", type=int, metavar="N", help="operations per run, shared out over the clients")
    load.add_argument("--write-ratio", type=float, default=0.5, metavar="R",
                      help="fraction of operations that are PUTs, 0.0-1.0 (default %(default)s)")
    load.add_argument("--value-size", type=int, default=100, metavar="BYTES",
                      help="characters per value (default %(default)s)")
    load.add_argument("--keys", type=int, default=1000, metavar="N", help="size of the key space (default %(default)s)")
    load.add_argument("--key-prefix", default="bench:", help="prefix of the benchmark's keys (default %(default)s)")
    load.add_argument("--replica", metavar="NAME", help="send every client through this replica "
                      "(default: clients spread round-robin over all replicas)")
    load.add_argument("--seed", type=int, default=1, help="seed of the keys and values chosen (default %(default)s)")
    load.add_argument("--timeout", type=float, default=10.0, metavar="S",
                      help="client timeout per operation (default %(default)s)")
    load.add_argument("--no-preload", action="store_true",
                      help="do not give every key a value before the runs (default: preload, so GETs find data)")
    workers = load.add_mutually_exclusive_group()
    workers.add_argument("--processes", dest="mode", action="store_const", const="processes",
                         help="clients as separate processes (the default)")
    workers.add_argument("--threads", dest="mode", action="store_const", const="threads",
                         help="clients as threads of this process (they share one GIL)")
    output = parser.add_argument_group("output")
    output.add_argument("--json", metavar="PATH", help="write every figure and the settings as JSON here")
    output.add_argument("--chart", metavar="PATH.svg", help="write the throughput-against-clients chart as SVG here")
    output.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(mode=DEFAULT_MODE)
    return parser


def _default_prog() -> str:
    """How the user started us: through the client's entry point, or as a module."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return f"{name} bench" if name in ("run_client.py", "rmi-kv-client") else "python -m rmi_kv.bench"


class UsageError(Exception):
    """Settings that make no sense; exit code 2."""


def client_counts(args: argparse.Namespace) -> list[int]:
    if not args.sweep:
        return [args.clients]
    try:
        counts = [int(part) for part in args.sweep.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--sweep takes client counts separated by commas, e.g. 1,4,16 (got {args.sweep!r})")
    if not counts:
        raise UsageError("--sweep needs at least one client count")
    return counts


def validate(args: argparse.Namespace) -> list[int]:
    """Check the settings; returns the client count of each run."""
    counts = client_counts(args)
    checks = [
        (all(count >= 1 for count in counts), "client counts must be at least 1"),
        (args.duration is None or args.duration > 0, "--duration must be positive"),
        (args.ops is None or args.ops >= 1, "--ops must be at least 1"),
        (0.0 <= args.write_ratio <= 1.0, "--write-ratio must be between 0.0 and 1.0"),
        (1 <= args.value_size <= 1024 * 1024, "--value-size must be between 1 and 1048576"),
        (args.keys >= 1, "--keys must be at least 1"),
        (args.replicas >= 1, "--replicas must be at least 1"),
        (args.timeout > 0, "--timeout must be positive"),
        (bool(args.key_prefix), "--key-prefix must not be empty"),
        (args.chart is None or args.chart.lower().endswith(".svg"), "--chart writes SVG: give a PATH ending in .svg"),
        (not (args.early_reply and (args.ns_host is not None or args.ns_port is not None)),
         "--early-reply is a setting of the replicas: start them with run_server.py --early-reply"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    return counts


def workload_of(args: argparse.Namespace) -> Workload:
    duration = None if args.ops is not None else (args.duration or DEFAULT_DURATION)
    return Workload(duration=duration, ops=args.ops, write_ratio=args.write_ratio, value_size=args.value_size,
                    keys=args.keys, key_prefix=args.key_prefix, seed=args.seed, mode=args.mode,
                    timeout=args.timeout, replica=args.replica, tls_dir=args.tls_dir)


# ------------------------------------------------------------------- cluster
class ClusterUnavailable(Exception):
    """The cluster could not be started or reached; exit code 4."""


@contextlib.contextmanager
def cluster_for(args: argparse.Namespace, console: Console) -> Iterator[tuple[Target, Path, str]]:
    """The cluster under test: a running one (--ns-host/--ns-port) or one started here."""
    if args.ns_host is not None or args.ns_port is not None:
        with _running_cluster(args) as found:
            yield found
        return
    from rmi_kv.server.cluster import LocalCluster

    cluster = LocalCluster(args.replicas, data_dir=args.data_dir, log_level="WARNING", tls_dir=args.tls_dir,
                           replica_args=["--early-reply"] if args.early_reply else [])
    with console.status(f"starting a name server and {args.replicas} replicas in {cluster.data_dir} ..."):
        try:
            cluster.start()
        except (RuntimeError, OSError) as error:
            raise ClusterUnavailable(f"could not start the local cluster: {error}") from None
    client = cluster.client(timeout=args.timeout)
    try:
        pids = {"nameserver": cluster.nameserver.pid} if cluster.nameserver else {}
        pids.update({name: child.pid for name, child in cluster.replicas.items()})
        target = Target(cluster.ns_host, cluster.ns_port, list(cluster.names), client, pids)
        description = f"started here: a name server and {args.replicas} replicas, data in {cluster.data_dir}"
        yield target, cluster.data_dir, description
    finally:
        client.close()
        cluster.stop()


@contextlib.contextmanager
def _running_cluster(args: argparse.Namespace) -> Iterator[tuple[Target, Path, str]]:
    host, port = args.ns_host or DEFAULT_NS_HOST, args.ns_port or DEFAULT_NS_PORT
    client = KeyValueClient(host, port, timeout=args.timeout, tls_dir=args.tls_dir)
    scratch = None
    try:
        names = sorted(client.replicas(refresh=True))
        if not names:
            raise ClusterUnavailable(f"no replica is registered in the name server at {host}:{port}")
        if args.data_dir:
            data_dir = Path(args.data_dir)
        else:
            scratch = tempfile.TemporaryDirectory(prefix="rmi_kv-bench-")
            data_dir = Path(scratch.name)
        description = f"running cluster of the name server at {host}:{port} ({len(names)} replicas)"
        yield Target(host, port, names, client), data_dir, description
    finally:
        client.close()
        if scratch is not None:
            scratch.cleanup()


# ----------------------------------------------------------------- the runs
def progress_bar(console: Console, enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[ops]:>9,} ops"),
                    TextColumn("{task.fields[rate]:>8,.0f} ops/s"), TimeElapsedColumn(),
                    console=console, disable=not enabled, transient=False)


class ProgressTask:
    """One progress bar, fed by a runner's ticks (operations done so far)."""

    def __init__(self, progress: Progress, label: str, workload: Workload) -> None:
        self.progress, self.workload = progress, workload
        self.total = workload.ops if workload.ops is not None else workload.duration
        self.task = progress.add_task(label, total=self.total, ops=0, rate=0.0)
        self.start: Optional[float] = None

    def tick(self, done: int) -> None:
        now = time.monotonic()
        self.start = self.start or now
        elapsed = max(now - self.start, 1e-9)
        completed = done if self.workload.ops is not None else min(elapsed, self.workload.duration)
        self.progress.update(self.task, completed=completed, ops=done, rate=done / elapsed if done else 0.0)

    def finish(self) -> None:
        self.progress.update(self.task, completed=self.total)


def run_all(workload: Workload, counts: list[int], target: Target, progress: Progress) -> list:
    """One run per client count, each with its own progress bar; a run with reads is
    followed at once by a no-op run with the same clients (see run_noop)."""
    summaries = []
    with progress:
        for clients in counts:
            bar = ProgressTask(progress, f"{clients:>3} {clients_word(clients)}", workload)
            summary = run_point(workload, clients, target, bar.tick)
            bar.finish()
            if wants_noop(workload):
                bar = ProgressTask(progress, f"{clients:>3} {clients_word(clients)}, no-op", noop_workload(workload))
                summary.noop = run_noop(workload, clients, target, bar.tick)
                bar.finish()
            summaries.append(summary)
    return summaries


def environment(busy_before: Optional[float]) -> dict:
    import Pyro5

    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "pyro5": Pyro5.__version__, "serializer": "serpent", "rmi_kv": __version__, "git": _git_state(),
            "machine_busy_before": busy_before, "load_average_after": _load_average()}


def _git_state() -> Optional[str]:
    """The commit of the code measured ('abc1234', '+ changes' when the tree differs), if known."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip()
        changed = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + (" + changes" if changed else "")) if commit else None


def _load_average() -> Optional[list]:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def _check_quiet(err: Console) -> Optional[float]:
    """Measure how busy the machine is before we start; warn when others use it."""
    busy = probe.machine_busy()
    if busy is not None and busy > 0.25:
        err.print(f"[yellow]warning: the machine's CPU was {busy:.0%} busy before the benchmark started; "
                  f"other processes will lower the figures[/yellow]")
    return busy


def settings_json(args: argparse.Namespace, workload: Workload, counts: list[int], cluster: str,
                  names: list[str], early_reply: bool = False) -> dict:
    return {"clients": counts, "sweep": bool(args.sweep), "duration_s": workload.duration, "ops": workload.ops,
            "write_ratio": workload.write_ratio, "value_size": workload.value_size, "keys": workload.keys,
            "key_prefix": workload.key_prefix, "replica": workload.replica or "spread over all (round-robin)",
            "mode": workload.mode, "seed": workload.seed, "timeout_s": workload.timeout,
            "preload": not args.no_preload, "cluster": cluster, "replicas": names, "tls": bool(args.tls_dir),
            "early_reply": early_reply, "reference": args.reference,
            "command": args.command_line or "python -m rmi_kv.bench " + " ".join(sys.argv[1:])}


def _answers_early(target: Target) -> bool:
    """Whether the cluster's replicas answer writes at the commit point."""
    try:
        return any(status.get("early_reply") for status in target.client.status())
    except RmiKvError:
        return False


def benchmark(args: argparse.Namespace, counts: list[int], out: Console, err: Console) -> int:
    """Start or find the cluster, measure the baselines, run, report; returns the exit code."""
    workload = workload_of(args)
    document = {"tool": "rmi_kv.bench",
                "started_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    busy_before = _check_quiet(err)
    with cluster_for(args, err) as (target, data_dir, cluster_description):
        document["settings"] = settings_json(args, workload, counts, cluster_description, target.names,
                                             _answers_early(target))
        baselines, summaries, preload_s = measure_all(args, workload, counts, target, data_dir, err)
    if args.reference:
        run_reference_all(args, workload, summaries, err)
    floors = baselines.floors()
    put_floor = "put_early_reply_ms" if document["settings"]["early_reply"] else "put_ms"
    runs = [run_json(summary, floors, os.cpu_count() or 1, floors[put_floor]) for summary in summaries]
    code = _exit_code(summaries)
    document.update({"environment": environment(busy_before), "preload_s": preload_s,
                     "baselines": baselines.as_dict(), "floor": floors, "put_floor": put_floor, "runs": runs,
                     "digests_equal": all(run.get("digests_equal") for run in runs), "exit_code": code})
    show(out, document, baselines, sweep=len(counts) > 1)
    _report_failures(err, summaries)
    _write_outputs(args, document, runs, document["settings"], err)
    return code


def measure_all(args: argparse.Namespace, workload: Workload, counts: list[int], target: Target,
                data_dir: Path, err: Console) -> tuple:
    """Preload, baselines, then one run per client count: (baselines, summaries, preload seconds)."""
    if args.replica is not None and args.replica not in target.names:
        raise ClusterUnavailable(f"no replica named {args.replica!r} is registered "
                                 f"(registered: {', '.join(target.names)})")
    preload_s = None if args.no_preload else _preload(workload, target, err)
    replica = args.replica or target.names[0]
    with err.status("measuring the baselines (round trip, forced write) ..."), \
            KeyValueClient(target.ns_host, target.ns_port, replica=replica, timeout=args.timeout,
                           tls_dir=args.tls_dir) as pinned:
        baselines = baseline_probe.measure(replica, target.client.replicas(), pinned.ping, data_dir,
                                           workload.value_size)
    summaries = run_all(workload, counts, target, progress_bar(err, not args.no_progress))
    return baselines, summaries, preload_s


def run_reference_all(args: argparse.Namespace, workload: Workload, summaries: list, err: Console) -> None:
    """--reference: each run again with the same clients on the reference two-phase
    commit (the cluster under test is stopped by then, if this tool started it)."""
    with contextlib.ExitStack() as stack:
        if args.data_dir:
            directory = Path(args.data_dir) / "reference"
        else:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rmi_kv-reference-")))
        with err.status(f"starting {args.replicas} reference nodes in {directory} ..."):
            try:
                cluster = stack.enter_context(ReferenceCluster(args.replicas, directory))
            except (RuntimeError, OSError) as error:
                err.print(f"[yellow]warning: no reference figures: {error}[/yellow]")
                return
            if not args.no_preload:
                cluster.preload(preload_batches(workload))
        with progress_bar(err, not args.no_progress) as progress:
            for summary in summaries:
                bar = ProgressTask(progress, f"{summary.clients:>3} clients, bare 2PC", workload)
                summary.reference = run_reference(workload, summary.clients, cluster, bar.tick)
                bar.finish()


def _preload(workload: Workload, target: Target, err: Console) -> float:
    started = time.monotonic()
    with err.status(f"preloading {workload.keys:,} keys ..."):
        preload(workload, target.client)
    return round(time.monotonic() - started, 3)


def _exit_code(summaries: list) -> int:
    """1 when reachable replicas differ after any run (that dominates), 4 when a
    replica was unreachable or clients (of a run or its no-op run) could not reach
    the cluster, else 0."""
    checks = [summary.digests for summary in summaries]
    if any(check is not None and len(set(check.digests.values())) > 1 for check in checks):
        return EXIT_DIVERGED
    unreached = any(s.unavailable or (s.noop is not None and s.noop.unavailable) for s in summaries)
    if any(check is None or not check.equal for check in checks) or unreached:
        return EXIT_UNAVAILABLE
    return EXIT_OK


def _report_failures(err: Console, summaries: list) -> None:
    for summary in summaries:
        for failure in summary.failures[:5]:
            err.print(f"[yellow]{summary.clients} clients: {failure}[/yellow]")
        for failure in (summary.noop.failures[:5] if summary.noop else []):
            err.print(f"[yellow]{summary.clients} clients, no-op run: {failure}[/yellow]")
        for failure in (summary.reference.failures[:5] if summary.reference else []):
            err.print(f"[yellow]{summary.clients} clients, bare 2PC run: {failure}[/yellow]")
        if summary.reference and summary.reference.digests and not summary.reference.digests.equal:
            err.print(f"[yellow]{summary.clients} clients: the reference nodes differ after their run; "
                      f"their figures are no yardstick[/yellow]")
        check = summary.digests
        if check is None:
            continue
        if check.unreachable:
            err.print(f"[bold red]{summary.clients} clients: replicas unreachable after the run: "
                      f"{', '.join(check.unreachable)}; the digests could not be compared[/bold red]")
        elif not check.equal:
            err.print(f"[bold red]FAILED: after the run with {summary.clients} clients the replicas DIFFER: "
                      + ", ".join(f"{name}={digest[:12]}" for name, digest in sorted(check.digests.items()))
                      + (f" ({check.note})" if check.note else "") + "[/bold red]")


def _write_outputs(args: argparse.Namespace, document: dict, runs: list, settings: dict, err: Console) -> None:
    if args.chart:
        ratio = settings["write_ratio"]
        title = (f"rmi_kv throughput against clients ({len(settings['replicas'])} replicas, "
                 f"write ratio {ratio:g}, {settings['value_size']}-byte values)")
        write_chart(Path(args.chart), runs, title)
        err.print(f"chart written to {args.chart}")
    if args.json:
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        err.print(f"figures written to {args.json}")


def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    """Run the benchmark with the command-line arguments ``argv``; returns the exit code."""
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error argparse has reported
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    args.command_line = None if argv is None else f"{parser.prog} " + " ".join(argv)
    err = Console(stderr=True)
    try:
        counts = validate(args)
        return benchmark(args, counts, Console(), err)
    except UsageError as error:
        parser.print_usage(sys.stderr)
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (ClusterUnavailable, RmiKvError) as error:
        print(f"cluster unavailable: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
