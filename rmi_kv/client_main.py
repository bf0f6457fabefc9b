"""``run_client.py``: one-shot commands against an rmi_kv cluster.

Exit codes: 0 success, 1 key not found, 2 usage error, 3 aborted,
4 cluster unavailable, 5 outcome unknown.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from .config import DEFAULT_NS_HOST, DEFAULT_NS_PORT
from .errors import InvalidRequest, RmiKvError

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_ABORTED, EXIT_UNAVAILABLE, EXIT_UNKNOWN = 0, 1, 2, 3, 4, 5


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run_client.py", description="Talk to an rmi_kv cluster.")
    parser.add_argument("--ns-host", default=DEFAULT_NS_HOST, help="name server address (default %(default)s)")
    parser.add_argument("--ns-port", type=int, default=DEFAULT_NS_PORT, help="name server port (default %(default)s)")
    parser.add_argument("--replica", help="replica to ask (default: any registered replica)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an answer (default %(default)s)")
    parser.add_argument("--log-file", help="log every request and response, with millisecond timestamps, here")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    put = commands.add_parser("put", help="set KEY to VALUE on every replica")
    put.add_argument("key")
    put.add_argument("value")
    get = commands.add_parser("get", help="print the value of KEY")
    get.add_argument("key")
    delete = commands.add_parser("delete", help="delete KEY on every replica")
    delete.add_argument("key")
    keys = commands.add_parser("keys", help="list keys (optionally those starting with PREFIX)")
    keys.add_argument("prefix", nargs="?", default="")
    keys.add_argument("--limit", type=int, default=100)
    commands.add_parser("status", help="show every replica's state")
    return parser


def run_command(kv, args: argparse.Namespace, out=sys.stdout, err=sys.stderr) -> int:
    """Run one parsed command with ``kv`` (a KeyValueClient); returns the exit code."""
    if args.command == "put":
        kv.put(args.key, args.value)
        print("OK", file=out)
    elif args.command == "get":
        value = kv.get(args.key)
        if value is None:
            print(f"key {args.key!r} not found", file=err)
            return EXIT_NOT_FOUND
        print(value, file=out)
    elif args.command == "delete":
        if not kv.delete(args.key):
            print(f"key {args.key!r} not found", file=err)
            return EXIT_NOT_FOUND
        print("deleted", file=out)
    elif args.command == "keys":
        for key in kv.keys(args.prefix, args.limit):
            print(key, file=out)
    elif args.command == "status":
        print_status(kv.status(), out)
    return EXIT_OK


def print_status(statuses: list[dict], out=sys.stdout) -> None:
    digests = {s["digest"] for s in statuses if s.get("reachable")}
    print(f"{'replica':<12} {'state':<12} {'keys':>8} {'committed':>10} {'aborted':>8} {'in doubt':>8}  digest",
          file=out)
    for status in statuses:
        if not status.get("reachable"):
            print(f"{status['name']:<12} {'unreachable':<12}  {status.get('error', '')}", file=out)
            continue
        state = "serving" if status.get("serving", True) else "refusing"
        print(f"{status['name']:<12} {state:<12} {status['keys']:>8} {status['committed']:>10} "
              f"{status['aborted']:>8} {len(status['in_doubt']):>8}  {status['digest'][:16]}", file=out)
    if len(digests) == 1:
        print("all reachable replicas hold the same data", file=out)
    elif digests:
        print("warning: replicas differ (digests are not equal)", file=out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("error: give a command: put, get, delete, keys or status", file=sys.stderr)
        return EXIT_USAGE
    if args.log_file:
        from .logs import setup_logging

        setup_logging("client", logging.WARNING, args.log_file, stream=_NullStream())
        logging.getLogger("rmi_kv.client").setLevel(logging.DEBUG)
    from .client import KeyValueClient

    try:
        with KeyValueClient(args.ns_host, args.ns_port, replica=args.replica, timeout=args.timeout) as kv:
            return run_command(kv, args)
    except InvalidRequest as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except RmiKvError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code


class _NullStream:
    def write(self, _text: str) -> None:
        pass

    def flush(self) -> None:
        pass


if __name__ == "__main__":
    sys.exit(main())
