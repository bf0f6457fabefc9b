"""``run_server.py``: start one replica, or a whole local cluster."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

from rmi_kv import options
from rmi_kv.config import DEFAULT_NS_HOST, DEFAULT_NS_PORT, Settings, Timeouts
from rmi_kv.errors import NameServerUnavailable, RmiKvError
from rmi_kv.core.failpoints import Failpoints
from rmi_kv.wire.hardening import check_bind_address
from rmi_kv.wire.pyro import configure_pyro
from rmi_kv.wire.tls import MEMBER, configure_tls
from rmi_kv.logs import setup_logging

log = logging.getLogger("rmi_kv.server")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_server.py",
        description="Start an rmi_kv replica (--name), or a name server and N replicas (--replicas N).")
    parser.add_argument("--name", help="replica name, registered as rmi_kv.replica.NAME")
    parser.add_argument("--ns-host", default=DEFAULT_NS_HOST, help="name server address (default %(default)s)")
    parser.add_argument("--ns-port", type=options.port(allow_zero=True), default=DEFAULT_NS_PORT,
                        help="name server port (default %(default)s; 0 with --with-nameserver: the OS chooses)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=options.port(allow_zero=True), default=0,
                        help="port to bind; 0 lets the OS choose (default)")
    parser.add_argument("--advertise", metavar="HOST[:PORT]", type=options.address,
                        help="the address others should dial (behind NAT, in containers); default: --host")
    parser.add_argument("--data-dir", help="where the replica keeps its data (default ./data/NAME)")
    parser.add_argument("--log-level", default="INFO", help="DEBUG shows every 2PC message (default %(default)s)")
    parser.add_argument("--log-file", help="also write the log to this file")
    parser.add_argument("--tls-dir", metavar="DIR",
                        help="mutual TLS with the certificates in DIR (see run_nameserver.py --make-certs)")
    parser.add_argument("--insecure", action="store_true",
                        help="allow binding to an address other than loopback without TLS")
    parser.add_argument("--max-connections", type=options.connections(), default=Settings().max_connections,
                        help="connections held at most; past it the longest-idle one is closed (default %(default)s)")
    parser.add_argument("--vote-timeout", type=options.seconds(), default=Timeouts().vote, metavar="S",
                        help="a participant that has not voted within S seconds counts as NO (default %(default)s)")
    parser.add_argument("--read-wait", type=options.seconds(), default=Timeouts().read_wait, metavar="S",
                        help="how long a read waits for a key whose write is undecided (default %(default)s)")
    parser.add_argument("--early-reply", action="store_true",
                        help="answer a write once its COMMIT decision is forced; the replicas apply it right "
                             "after (a read there waits for it), but status() may briefly differ")
    parser.add_argument("--failover", choices=("on", "off"), default="on",
                        help="on: writes go on while a majority is up, after the lease of the replicas that "
                             "are down runs out; off: every member must vote, one down stops writes "
                             "(default %(default)s)")
    parser.add_argument("--lease", type=options.seconds(), default=Settings().lease, metavar="S",
                        help="read lease, and about how long writes wait for a replica that is gone "
                             "(0.2 to 60; default %(default)s)")
    parser.add_argument("--verify-every", type=options.seconds(allow_zero=True), default=Settings().verify_every,
                        metavar="S", help="recompute the digest from the data in the background every S seconds, "
                                          "when the replica is idle (0: only on the verify command; "
                                          "default %(default)s)")
    parser.add_argument("--anti-entropy", type=options.seconds(allow_zero=True),
                        default=Settings().antientropy_every, metavar="S",
                        help="compare the members' digests every S seconds when nothing is in flight, and re-sync "
                             "a replica that differs from the majority (0: off; default %(default)s)")
    parser.add_argument("--ns-wait", type=options.seconds(allow_zero=True), default=15.0, metavar="S",
                        help="wait up to S seconds for the name server to come up (default %(default)s)")
    parser.add_argument("--failpoint", action="append", default=[], metavar="NAME=ACTION",
                        help="make the replica fail on purpose (crash, error, delay:MS; 'once:' prefix)")
    parser.add_argument("--restore", metavar="FILE",
                        help="start from the snapshot FILE (run_client.py snapshot save): only into a new, empty "
                             "data directory; start the restored replica first, or give each replica --restore")
    parser.add_argument("--remove", metavar="NAME",
                        help="take the stopped replica NAME out of the cluster for good, then exit")
    parser.add_argument("--replicas", type=options.whole_number(low=1, high=100), metavar="N",
                        help="start replica1..N as child processes instead of one replica")
    parser.add_argument("--with-nameserver", action="store_true",
                        help="with --replicas: start a name server too, on --ns-host/--ns-port")
    return parser


def wait_for_nameserver(host: str, port: int, patience: float) -> None:
    """Give a name server that is still starting (same script, same moment) time to come up."""
    from rmi_kv.wire.naming import connect_nameserver

    deadline = time.monotonic() + patience
    announced = False
    while True:
        try:
            connect_nameserver(host, port, timeout=2.0)._pyroRelease()
            return
        except NameServerUnavailable:
            if time.monotonic() >= deadline:
                raise
            if not announced:
                log.info("waiting up to %.0f s for the name server at %s:%d", patience, host, port)
                announced = True
            time.sleep(0.2)


def settings_from(args: argparse.Namespace) -> Settings:
    """The replica's settings: defaults, with the timeouts given on the command line
    (their ranges were checked when it was parsed)."""
    timeouts = dataclasses.replace(Timeouts(), vote=args.vote_timeout, decision=args.vote_timeout,
                                   read_wait=args.read_wait)
    return Settings(timeouts=timeouts, max_connections=args.max_connections, early_reply=args.early_reply,
                    failover=args.failover == "on", lease=args.lease, verify_every=args.verify_every,
                    antientropy_every=args.anti_entropy)


def run_replica(args: argparse.Namespace) -> int:
    from rmi_kv.server.replica import ReplicaServer

    setup_logging(args.name, args.log_level, args.log_file)
    try:
        warning = check_bind_address(args.host, insecure=args.insecure, tls=bool(args.tls_dir))
        if warning:
            log.warning("%s", warning)
        failpoints = Failpoints.from_sources(args.failpoint)
        settings = settings_from(args)
        if args.tls_dir:
            configure_pyro(limits=settings.limits)  # to reach the name server; the replica configures its serving
            configure_tls(args.tls_dir, MEMBER)
        wait_for_nameserver(args.ns_host, args.ns_port, args.ns_wait)
        server = ReplicaServer(args.name, args.data_dir or Path("data") / args.name, args.ns_host, args.ns_port,
                               host=args.host, port=args.port, settings=settings, failpoints=failpoints,
                               advertise=args.advertise, tls_dir=args.tls_dir, restore=args.restore)
    except RmiKvError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except OSError as error:
        print(f"error: cannot start replica {args.name}: {error}", file=sys.stderr)
        return 4

    def request_stop(signum, _frame) -> None:
        log.info("signal %d: shutting down", signum)
        server.request_stop()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        server.start()
    except RmiKvError as error:
        print(f"error: {error}", file=sys.stderr)
        server.stop(grace=0)
        return error.exit_code
    print(f"rmi_kv replica {args.name} ready at {server.uri}", flush=True)
    server.wait()
    server.stop()
    if server.restart_requested:
        restart_process()
    return 0


def restart_process() -> None:
    """Run this replica's command line again in this process (the PID stays, for whoever watches it)."""
    from rmi_kv.server.replica import RESTARTED_FOR_DAMAGE

    log.warning("starting again to rebuild the damaged data")
    logging.shutdown()
    os.environ[RESTARTED_FOR_DAMAGE] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def run_cluster(args: argparse.Namespace) -> int:
    from rmi_kv.server.cluster import LocalCluster

    setup_logging("launcher", args.log_level)
    data_dir = Path(args.data_dir or "data")
    cluster = LocalCluster(args.replicas, data_dir=data_dir, ns_host=args.ns_host, ns_port=args.ns_port,
                           start_nameserver=args.with_nameserver, log_level=args.log_level, tls_dir=args.tls_dir,
                           replica_args=replica_options(args))
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        cluster.start()
    except (RuntimeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 4
    try:
        if cluster.nameserver is not None:
            print(f"name server   {args.ns_host}:{cluster.ns_port}   log {cluster.nameserver.log_path}")
        for name, child in cluster.replicas.items():
            print(f"{name:<13} {child.address}   data {data_dir / name}   log {child.log_path}")
        print("all running; press Ctrl-C to stop them", flush=True)
        reported: set[str] = set()
        tls = f" --tls-dir {args.tls_dir}" if args.tls_dir else ""
        while not stop.wait(0.5):
            for name, child in cluster.replicas.items():
                if not child.alive() and name not in reported:
                    reported.add(name)
                    print(f"warning: {name} exited (code {child.process.returncode}); see {child.log_path}. "
                          f"The others keep running; writes abort until it is back: "
                          f"python run_server.py --name {name} --ns-host {args.ns_host} --ns-port {cluster.ns_port} "
                          f"--data-dir {data_dir / name}{tls}", file=sys.stderr, flush=True)
            nameserver = cluster.nameserver
            if nameserver is not None and not nameserver.alive() and "nameserver" not in reported:
                reported.add("nameserver")
                print(f"warning: the name server exited (code {nameserver.process.returncode}); see "
                      f"{nameserver.log_path}. The replicas keep serving at the addresses they know, but new "
                      f"clients and restarted replicas cannot find them until it is back: python run_nameserver.py "
                      f"--host {args.ns_host} --port {cluster.ns_port} --storage {data_dir / 'nameserver.sqlite3'}"
                      f"{tls}", file=sys.stderr, flush=True)
    finally:
        cluster.stop()
        print("stopped", flush=True)
    return 0


def run_remove(args: argparse.Namespace) -> int:
    from rmi_kv.server.admin import remove_member

    setup_logging("admin", "WARNING")
    try:
        if args.tls_dir:
            configure_pyro()
            configure_tls(args.tls_dir, MEMBER)
        print(remove_member(args.remove, args.ns_host, args.ns_port))
    except RmiKvError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


#: options that set up one replica, and so mean nothing with --replicas N (each child gets its own)
_ONE_REPLICA_OPTIONS = ("name", "port", "advertise", "log_file", "host", "insecure")
#: replica options that --replicas N passes on to every child it starts
_FORWARDED_OPTIONS = ("vote_timeout", "read_wait", "max_connections", "ns_wait", "failpoint", "failover", "lease",
                      "verify_every", "anti_entropy", "restore")


def _given(parser: argparse.ArgumentParser, args: argparse.Namespace, dest: str) -> bool:
    """Whether option ``dest`` was set to something other than its default."""
    return getattr(args, dest) != parser.get_default(dest)


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def contradictions(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Optional[str]:
    """Why the options given contradict each other (None: they do not)."""
    if not 0.2 <= args.lease <= 60:
        return f"--lease must be from 0.2 to 60 seconds, not {args.lease:g}"
    if args.ns_port == 0 and not args.with_nameserver:
        return "--ns-port 0 (let the OS choose) goes with --with-nameserver: a replica needs the name server's port"
    if args.remove is not None:
        others = [_flag(dest) for dest in ("name", "replicas", "with_nameserver") if _given(parser, args, dest)]
        if others:
            return f"--remove takes a stopped replica out and exits; it does not go with {', '.join(others)}"
        return None
    if args.replicas is None:
        if args.with_nameserver:
            return "--with-nameserver goes with --replicas N (start a name server by itself with run_nameserver.py)"
        return None
    given = [_flag(dest) for dest in _ONE_REPLICA_OPTIONS if _given(parser, args, dest)]
    if given:
        return (f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} for one replica; --replicas N "
                f"starts replica1..N, each with its own name, port and log: give one or the other")
    return None


def replica_options(args: argparse.Namespace) -> list[str]:
    """The command-line options ``--replicas N`` passes on to each replica it starts."""
    parser = build_parser()
    options = ["--early-reply"] if args.early_reply else []
    for dest in _FORWARDED_OPTIONS:
        if not _given(parser, args, dest):
            continue
        value = getattr(args, dest)
        for one in value if isinstance(value, list) else [value]:
            options += [_flag(dest), str(one)]
    return options


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    conflict = contradictions(parser, args)
    if conflict:
        parser.error(conflict)
    if args.remove is not None:
        return run_remove(args)
    if args.replicas is not None:
        return run_cluster(args)
    if not args.name:
        parser.error("give --name NAME for one replica, or --replicas N for a local cluster")
    from rmi_kv.core.validation import check_name

    try:
        check_name(args.name)
    except RmiKvError as error:
        parser.error(str(error))
    return run_replica(args)


if __name__ == "__main__":
    sys.exit(main())
