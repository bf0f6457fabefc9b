"""``run_nameserver.py``: the Pyro5 name server (the RMI registry of rmi_kv)."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Optional, Sequence

from Pyro5.api import expose
from Pyro5.nameserver import NameServer, NameServerDaemon

from rmi_kv import options
from rmi_kv.config import DEFAULT_NS_HOST, DEFAULT_NS_PORT, Timeouts
from rmi_kv.errors import RmiKvError
from rmi_kv.wire.hardening import ConnectionGuard, GuardedDaemonMixin, check_bind_address, refuse_unsafe_messages
from rmi_kv.logs import setup_logging
from rmi_kv.wire.pyro import configure_pyro
from rmi_kv.wire.tls import MEMBER, configure_tls, make_certificates, require_member

log = logging.getLogger("rmi_kv.nameserver")


@expose
class MembersOnlyNameServer(NameServer):
    """Pyro5's name server; under TLS only members may change registrations."""

    def register(self, name, uri, safe=False, metadata=None):
        require_member("register")
        return super().register(name, uri, safe, metadata)

    def remove(self, name=None, prefix=None, regex=None):
        require_member("remove")
        return super().remove(name, prefix, regex)

    def set_metadata(self, name, metadata):
        require_member("set_metadata")
        return super().set_metadata(name, metadata)


class GuardedNameServerDaemon(GuardedDaemonMixin, NameServerDaemon):
    """Pyro5's name server daemon, with bounded connections and members-only changes."""

    def __init__(self, *args, guard: ConnectionGuard, **kwargs) -> None:
        self.guard = guard
        super().__init__(*args, **kwargs)
        self.nameserver.__class__ = MembersOnlyNameServer
        self.tls_handshakes_in_workers()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run_nameserver.py",
                                     description="Start the Pyro5 name server that rmi_kv replicas register with.")
    parser.add_argument("--host", default=DEFAULT_NS_HOST, help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=options.port(allow_zero=True), default=DEFAULT_NS_PORT,
                        help="port to bind, 0 lets the OS choose (default %(default)s)")
    parser.add_argument("--storage", metavar="PATH",
                        help="keep registrations across restarts in this SQLite file")
    parser.add_argument("--tls-dir", metavar="DIR", help="mutual TLS with the certificates in DIR")
    parser.add_argument("--make-certs", metavar="DIR",
                        help="create a development CA plus member and client certificates in DIR, then exit")
    parser.add_argument("--cert-host", action="append", default=[], metavar="ADDR",
                        help="with --make-certs: an address members are reached at (repeatable; "
                             "127.0.0.1 and localhost are always included)")
    parser.add_argument("--insecure", action="store_true",
                        help="allow binding to an address other than loopback without TLS")
    parser.add_argument("--max-connections", type=options.connections(), default=200,
                        help="connections held at most; past it the longest-idle one is closed (default %(default)s)")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default %(default)s)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.make_certs:
        written = make_certificates(args.make_certs, hosts=["127.0.0.1", "localhost", *args.cert_host])
        print("created " + ", ".join(str(path) for path in written))
        print(f"copy {args.make_certs} to every machine and start everything with --tls-dir {args.make_certs}; "
              f"ca.key signs certificates: keep it away from the cluster")
        return 0
    setup_logging("nameserver", args.log_level)
    timeouts = Timeouts()
    try:
        warning = check_bind_address(args.host, insecure=args.insecure, tls=bool(args.tls_dir))
        configure_pyro(server=True, max_connections=args.max_connections, idle_timeout=timeouts.idle_connection)
        refuse_unsafe_messages()
        if args.tls_dir:
            configure_tls(args.tls_dir, MEMBER)
    except RmiKvError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    if warning:
        log.warning("%s", warning)
    storage = None
    if args.storage:
        Path(args.storage).parent.mkdir(parents=True, exist_ok=True)
        storage = f"sql:{args.storage}"
    guard = ConnectionGuard(limit=args.max_connections, handshake_timeout=timeouts.handshake,
                            idle_timeout=timeouts.idle_connection)
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
