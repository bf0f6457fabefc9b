"""``run_client.py --web``: the live web view, on an embedded cluster or an attached one.

Without ``--ns-host``/``--ns-port`` it starts its own cluster (a name server
and five replicas on 127.0.0.1, as the demo does) with controls in the page;
with either, it shows the cluster running there, without controls. The page
listens on 127.0.0.1 (``--host``, ``--port``; the address is printed);
another address needs ``--tls-dir`` (HTTPS) or ``--insecure``, as a replica
does. Ctrl-C (or SIGTERM) stops it and the embedded cluster.

Exit codes: 0 stopped, 2 usage error (a bad option, a refused address),
4 the port is taken or the name server does not answer, 1 anything else.
"""
from __future__ import annotations

import argparse
import errno
import logging
import signal
import socket
import sys
from typing import Optional, Sequence

from rmi_kv import options
from rmi_kv.cli.arguments import Parser, report_usage
from rmi_kv.cli.commands import UsageError
from rmi_kv.config import DEFAULT_NS_HOST, DEFAULT_NS_PORT
from rmi_kv.errors import InvalidRequest, RmiKvError
from rmi_kv.logs import setup_logging

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 4
DEFAULT_PORT = 8080
REPLICAS = 5


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="run_client.py --web",
                    description="A live web view of an rmi_kv cluster: the replicas, every two-phase commit "
                                "message as it travels (slowed, or one at a time), a timeline of transactions "
                                "and an event log; with controls to write, crash, pause, restart and arm "
                                "failpoints on a cluster it started itself.",
                    epilog="Without --ns-host and --ns-port it starts its own cluster (a name server and 5 replicas "
                           "on 127.0.0.1, data in a temporary directory removed at the end). With either it shows "
                           f"the cluster there (the other defaults to {DEFAULT_NS_HOST}:{DEFAULT_NS_PORT}), "
                           "without controls. Exit codes: 0 stopped, 2 usage error, 4 port taken or name "
                           "server unreachable, 1 other errors.")
    parser.add_argument("--host", default="127.0.0.1", help="address the page listens on (default %(default)s)")
    parser.add_argument("--port", type=options.port(allow_zero=True), default=DEFAULT_PORT,
                        help="port of the page (default %(default)s; 0: the OS chooses)")
    parser.add_argument("--ns-host", help="show the running cluster whose name server is on this host")
    parser.add_argument("--ns-port", type=options.port(), help="show the running cluster whose name server "
                        "listens on this port")
    parser.add_argument("--tls-dir", metavar="DIR", help="serve the page over HTTPS with DIR's member certificate "
                        "(and reach an attached cluster with its client certificate)")
    parser.add_argument("--insecure", action="store_true",
                        help="allow a --host beyond this machine without TLS (anyone who reaches it sees the "
                             "cluster, and controls it when it is embedded)")
    parser.add_argument("--failover", choices=("on", "off"), default="on",
                        help="the embedded cluster's protocol: on (epochs, the default) or off (strict 2PC)")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="log level on stderr (default %(default)s)")
    parser.add_argument("--log-file", help="also log to this file")
    return parser


def listen(host: str, port: int) -> socket.socket:
    """The page's listening socket, bound now: a port in use is a clear error before anything starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise OSError(error.errno, f"port {port} on {host} is in use; give another with --port "
                                       f"(--port 0: the OS chooses one)") from None
        raise OSError(error.errno, f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``run_client.py --web [options]``; returns the exit code."""
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except UsageError as usage:
        return report_usage(usage)
    except SystemExit as done:  # --help
        return int(done.code or 0)
    setup_logging("web", args.log_level, args.log_file)
    from rmi_kv.wire.hardening import check_bind_address

    try:
        warning = check_bind_address(args.host, insecure=args.insecure, tls=bool(args.tls_dir))
        if args.tls_dir:
            from rmi_kv.wire.tls import MEMBER, certificate_files

            certificate_files(args.tls_dir, MEMBER)
    except InvalidRequest as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if warning:
        log.warning("%s", warning)
    try:
        sock = listen(args.host, args.port)
    except OSError as error:
        print(f"error: {error.strerror}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    previous = signal.signal(signal.SIGTERM, _interrupt)  # uvicorn raises it again once it stopped serving
    try:
        return _serve(args, sock)
    except KeyboardInterrupt:
        return EXIT_OK
    except RmiKvError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except RuntimeError as error:  # the embedded cluster did not start: its first line says why
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        sock.close()
        signal.signal(signal.SIGTERM, previous)


def _interrupt(_number: int, _frame: object) -> None:
    """SIGTERM stops the view and the embedded cluster as Ctrl-C does."""
    raise KeyboardInterrupt


def _serve(args: argparse.Namespace, sock: socket.socket) -> int:
    from rmi_kv.web.server import WebServer

    attached = args.ns_host is not None or args.ns_port is not None
    with WebServer.attached(args.ns_host or DEFAULT_NS_HOST, args.ns_port or DEFAULT_NS_PORT, args.tls_dir) \
            if attached else WebServer.embedded(REPLICAS, failover=args.failover) as server:
        scheme = "https" if args.tls_dir else "http"
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"web view of {server.title} ready at {scheme}://{shown}:{port}/ (Ctrl-C stops it"
              f"{' and the cluster' if server.controls else ''})", flush=True)
        server.serve(sock, tls_dir=args.tls_dir)
    return EXIT_OK
