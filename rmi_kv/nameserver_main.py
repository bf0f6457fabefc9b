"""``run_nameserver.py``: the Pyro5 name server (the RMI registry of rmi_kv)."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Optional, Sequence

from .config import DEFAULT_NS_HOST, DEFAULT_NS_PORT, configure_pyro
from .logs import setup_logging

log = logging.getLogger("rmi_kv.nameserver")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run_nameserver.py",
                                     description="Start the Pyro5 name server that rmi_kv replicas register with.")
    parser.add_argument("--host", default=DEFAULT_NS_HOST, help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_NS_PORT,
                        help="port to bind, 0 lets the OS choose (default %(default)s)")
    parser.add_argument("--storage", metavar="PATH",
                        help="keep registrations across restarts in this SQLite file")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default %(default)s)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("nameserver", args.log_level)
    configure_pyro(server=True)
    from Pyro5.nameserver import start_ns

    storage = None
    if args.storage:
        Path(args.storage).parent.mkdir(parents=True, exist_ok=True)
        storage = f"sql:{args.storage}"
    try:
        uri, daemon, _ = start_ns(host=args.host, port=args.port, enableBroadcast=False, storage=storage)
    except OSError as error:
        print(f"error: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 4
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
