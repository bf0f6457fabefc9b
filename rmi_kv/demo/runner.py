"""``run_client.py --demo`` / ``python -m rmi_kv.demo``: the command line of the guided demo.

Without ``--ns-host``/``--ns-port`` it starts its own cluster (a name server
and five replicas as child processes on 127.0.0.1, ports chosen by the OS,
data in a temporary directory, ``--failover off`` until step 8) and removes
all of it at the end, on Ctrl-C and on any error. Ten steps
(``rmi_kv.demo.walkthrough``):

    1 the cluster              6 a participant crashes before voting
    2 pre-populate the store   7 the coordinator crashes after its decision
    3 PUT/GET/DELETE anywhere  8 a replica dies: failover to a new epoch
    4 one write, traced        9 the coordinator dies: a new epoch takes over
    5 concurrent conflicting writes to one key
                              10 the summary

Exit code 0 when every check held; 1 (and "demo failed at step N: reason")
otherwise; 130 on Ctrl-C; 2 for a usage error.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Optional, Sequence

from rich.console import Console, RenderableType
from rich.text import Text

from rmi_kv import options
from rmi_kv.cli.arguments import Parser, report_usage
from rmi_kv.cli.commands import UsageError
from rmi_kv.cli.failures import traceback_text
from rmi_kv.cli.render import emit, error_lines
from rmi_kv.config import DEFAULT_NS_HOST, DEFAULT_NS_PORT
from rmi_kv.demo.scenario import CHECK_FAILED, CHECK_OK, REPLICAS, STRICT, SUMMARY, StepResult
from rmi_kv.demo.walkthrough import STEPS, Demo
from rmi_kv.errors import NameServerUnavailable

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def show(console: Console, renderable: RenderableType) -> None:
    """The demo's text, wrapped between words at the terminal's width."""
    emit(console, renderable, wrap=True)


def build_parser() -> argparse.ArgumentParser:
    """The demo's options: which cluster, which steps, pauses, the transcript."""
    parser = Parser(
        prog="run_client.py --demo",
        description="A guided walk through rmi_kv: the cluster, reads and writes through every replica, "
                    "one write message by message, conflicting writes, a participant crash and a "
                    "coordinator crash with recovery (the strict protocol, --failover off), then a replica "
                    "that dies while failover is on: a new epoch, and its rejoining; and coordinators that die "
                    "mid-commit: the new epoch settles their transactions. Every step checks what it shows.",
        epilog="Which cluster: without --ns-host and --ns-port the demo always starts its own (a name server "
               "and 5 replicas on 127.0.0.1, OS-chosen ports, data in a temporary directory, all removed at "
               "the end). With either option it uses the cluster already running there (the other one "
               f"defaults to {DEFAULT_NS_HOST}:{DEFAULT_NS_PORT}), writes keys course:* and demo:* into it, "
               "and skips the crash steps 6 to 9. Exit codes: 0 every check held, 1 a check failed or an "
               "error, 2 usage error, 130 interrupted.")
    parser.add_argument("--ns-host", help=f"use the running cluster whose name server is on this host "
                        f"(port: --ns-port or {DEFAULT_NS_PORT})")
    parser.add_argument("--ns-port", type=options.port(), help=f"use the running cluster whose name server listens "
                        f"on this port (host: --ns-host or {DEFAULT_NS_HOST})")
    parser.add_argument("--allow-crash", action="store_true",
                        help="on a running cluster, say why the crash steps still cannot run there "
                             "(they need replicas the demo started itself)")
    parser.add_argument("--pause", action="store_true", help="wait for Enter between steps (for a classroom)")
    parser.add_argument("--step", type=int, choices=range(1, SUMMARY + 1), metavar="N",
                        help=f"run step N (1-{SUMMARY}) only; it sets up what it needs itself")
    parser.add_argument("--record", metavar="FILE",
                        help="save the whole transcript to FILE (HTML when FILE ends in .html, text otherwise)")
    parser.add_argument("--no-color", action="store_true", help="no colours (also: the NO_COLOR variable)")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks and the cluster's logs on failure")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``run_client.py --demo [options]`` / ``python -m rmi_kv.demo [options]``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except UsageError as usage:
        return report_usage(usage)
    except SystemExit as done:  # --help
        return int(done.code or 0)
    # a terminal says its width; elsewhere COLUMNS does when set, else 100
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit() else 100
    console = Console(record=True, no_color=args.no_color or None, highlight=False, emoji=False, width=width)
    previous = _terminate_as_interrupt()
    cluster = None
    demo: Optional[Demo] = None
    began = time.monotonic()
    code = EXIT_FAILED
    try:
        from rmi_kv.wire.client import KeyValueClient

        external = args.ns_host is not None or args.ns_port is not None
        if external:
            host, port = args.ns_host or DEFAULT_NS_HOST, args.ns_port or DEFAULT_NS_PORT
            show(console, Text.assemble(("rmi_kv demo", "bold"), f" on the running cluster at {host}:{port}"))
        else:
            cluster = _start_cluster(console)
            host, port = cluster.ns_host, cluster.ns_port

        def connect(replica: Optional[str]) -> KeyValueClient:
            return KeyValueClient(host, port, replica=replica, timeout=10.0)

        demo = Demo(console, connect, cluster=cluster, allow_crash=args.allow_crash, pause=args.pause,
                    debug=args.debug)
        demo.kv().replicas(refresh=True)  # a clear error now if the name server is not there
        selected = [args.step] if args.step else sorted(STEPS)
        results = demo.run(selected)
        code = _verdict(console, results, time.monotonic() - began)
    except KeyboardInterrupt:
        show(console, Text("interrupted: stopping the cluster", style="bold yellow"))
        code = EXIT_INTERRUPTED
    except Exception as error:
        if args.debug:
            show(console, Text(traceback_text(error), style="dim"))
            if cluster is not None:
                show(console, Text(cluster.logs(), style="dim"))
        if isinstance(error, NameServerUnavailable) and cluster is None and demo is not None:
            error = NameServerUnavailable(
                f"no name server answers at {demo.kv().ns_host}:{demo.kv().ns_port}; start a cluster there "
                "('python run_server.py --replicas 5 --with-nameserver'), or leave out --ns-host/--ns-port "
                "and the demo starts its own")
        for line in error_lines(error, lead="demo failed: "):
            show(console, line)
        code = EXIT_FAILED
    finally:
        signal_guard = _ignore_interrupts()
        try:
            if demo is not None:
                demo.close()
            if cluster is not None:
                cluster.stop()
                show(console, Text(f"stopped the embedded cluster and removed {cluster.data_dir}", style="dim"))
            if args.record:
                _save(console, args.record)
        finally:
            signal_guard()
            _restore(previous)
    return code


def _start_cluster(console: Console) -> Any:
    """The embedded cluster, started: a name server and REPLICAS replicas with the strict protocol (the
    failover step turns failover on), saying where their data goes."""
    from rmi_kv.server.cluster import LocalCluster

    cluster = LocalCluster(REPLICAS, replica_args=STRICT)
    show(console, Text.assemble(("rmi_kv demo", "bold"), f": starting a name server and {REPLICAS} "
                                "replicas on 127.0.0.1 (ports chosen by the OS)"))
    show(console, Text(f"the replicas run with {' '.join(STRICT)}, the textbook's strict protocol, until "
                       "step 8 turns failover on", style="dim"))
    show(console, Text(f"data directory: {cluster.data_dir} (removed at the end)", style="dim"))
    started = time.monotonic()
    cluster.start()
    show(console, Text(f"cluster up in {time.monotonic() - started:.1f} s; name server at "
                       f"{cluster.ns_host}:{cluster.ns_port}", style="dim"))
    return cluster
def _verdict(console: Console, results: list[StepResult], seconds: float) -> int:
    checks = sum(len(r.checks) for r in results)
    failed = [r for r in results if r.status == "failed" or r.status == "not run"]
    console.print()
    if not failed:
        skipped = [str(r.number) for r in results if r.status == "skipped"]
        extra = f" (skipped: step{'s' if len(skipped) > 1 else ''} {', '.join(skipped)})" if skipped else ""
        held = f"all {checks} checks held" if checks else "nothing failed"
        show(console, Text.assemble((f"{CHECK_OK} ", "bold green"),
                                    (f"{held}; the demo took {seconds:.1f} s{extra}", "bold green")))
        return EXIT_OK
    first = failed[0]
    reason = first.failures[0] if first.failures else "it did not run"
    show(console, Text.assemble((f"{CHECK_FAILED} ", "bold red"),
                                (f"demo failed at step {first.number}: {reason}", "bold red")))
    return EXIT_FAILED


def _save(console: Console, path: str) -> None:
    try:
        if path.lower().endswith((".html", ".htm")):
            console.save_html(path)
        else:
            console.save_text(path)
    except OSError as error:
        print(f"cannot save the transcript to {path}: {error.strerror}", file=sys.stderr)
        return
    print(f"transcript saved to {path}", file=sys.stderr)


def _terminate_as_interrupt() -> Any:
    """SIGTERM cleans up like Ctrl-C (only the main thread may set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(_number: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def _restore(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _ignore_interrupts() -> Callable[[], None]:
    """While the cluster stops, a second Ctrl-C must not leave processes behind."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    saved = signal.signal(signal.SIGINT, signal.SIG_IGN), signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def restore() -> None:
        signal.signal(signal.SIGINT, saved[0])
        signal.signal(signal.SIGTERM, saved[1])

    return restore

