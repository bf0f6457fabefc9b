"""``run_nameserver.py``: the Pyro5 name server (the RMI registry of rmi_kv)."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Optional, Sequence

from Pyro5.nameserver import NameServerDaemon

from .config import DEFAULT_NS_HOST, DEFAULT_NS_PORT, Timeouts, configure_pyro
from .errors import RmiKvError
from .hardening import ConnectionGuard, GuardedDaemonMixin, check_bind_address
from .logs import setup_logging

log = logging.getLogger("rmi_kv.nameserver")


class GuardedNameServerDaemon(GuardedDaemonMixin, NameServerDaemon):
    """Pyro5's name server daemon, with bounded connections."""

    def __init__(self, *args, guard: ConnectionGuard, **kwargs) -> None:
        self.guard = guard
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run_nameserver.py",
                                     description="Start the Pyro5 name server that rmi_kv replicas register with.")
    parser.add_argument("--host", default=DEFAULT_NS_HOST, help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_NS_PORT,
                        help="port to bind, 0 lets the OS choose (default %(default)s)")
    parser.add_argument("--storage", metavar="PATH",
                        help="keep registrations across restarts in this SQLite file")
    parser.add_argument("--insecure", action="store_true",
                        help="allow binding to an address other than loopback without TLS")
    parser.add_argument("--max-connections", type=int, default=200,
                        help="connections held at most; past it the longest-idle one is closed (default %(default)s)")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default %(default)s)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("nameserver", args.log_level)
    try:
        warning = check_bind_address(args.host, args.insecure)
    except RmiKvError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    if warning:
        log.warning("%s", warning)
    configure_pyro(server=True, max_connections=args.max_connections)
    storage = None
    if args.storage:
        Path(args.storage).parent.mkdir(parents=True, exist_ok=True)
        storage = f"sql:{args.storage}"
    guard = ConnectionGuard(limit=args.max_connections, handshake_timeout=Timeouts().handshake,
                            idle_timeout=Timeouts().idle_connection)
    try:
        daemon = GuardedNameServerDaemon(host=args.host, port=args.port, storage=storage, guard=guard)
    except OSError as error:
        print(f"error: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 4
    uri = daemon.uriFor(daemon.nameserver)
    stop = threading.Event()

    def request_stop(signum, _frame) -> None:
        log.info("signal %d: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    host, port = daemon.sock.getsockname()[:2]
    print(f"rmi_kv name server ready at {host}:{port} ({uri})", flush=True)
    try:
        daemon.requestLoop(loopCondition=lambda: not stop.is_set())
    finally:
        daemon.close()
    log.info("name server stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
