"""The command line of ``run_client.py``: its options, its one-shot commands and its exit codes.

``Parser`` is the argparse parser of every client front end (``run_client.py``
and the demo): a bad command line becomes a ``UsageError`` that carries the
parser, and ``report_usage`` says it the way argparse would (usage, then
'PROG: error: ...', exit code 2).
"""
from __future__ import annotations

import argparse
import difflib
import re
import sys
from typing import Any, Optional, Sequence

from rmi_kv import options
from rmi_kv.cli.commands import (ALIASES, HELP, KEYS_LIMIT, OUTPUT_FORMATS, Command, UsageError, argv_words,
                                 parse_limit, parse_txn, parse_words)
from rmi_kv.config import DEFAULT_NS_HOST, DEFAULT_NS_PORT
from rmi_kv.errors import ClusterUnhealthy

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_ABORTED, EXIT_UNAVAILABLE, EXIT_UNKNOWN = 0, 1, 2, 3, 4, 5
EXIT_UNHEALTHY = ClusterUnhealthy.exit_code
EXIT_INTERRUPTED = 130
#: stdout's reader went away: what a shell reports for a tool killed by SIGPIPE (128 + 13)
EXIT_CLOSED_PIPE = 141

#: options of the main parser that take a value (to find the first positional word)
_VALUE_OPTIONS = frozenset({"--ns-host", "--ns-port", "--replica", "--timeout", "--log-file", "--tls-dir", "--file", "-f",
                            "-w", "--write-out"})
#: argparse's complaint about a word that names no command
_INVALID_CHOICE = re.compile(r"argument COMMAND: invalid choice: '(?P<word>[^']*)' \(choose from (?P<choices>.*)\)")


class Parser(argparse.ArgumentParser):
    """Raises UsageError (carrying the parser, to print its usage) instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        unknown = _INVALID_CHOICE.fullmatch(message)
        if unknown:
            raise UsageError(f"unknown command {unknown['word']!r}", parser=self,
                             hint=unknown_command_hint(unknown["word"], re.findall(r"'([^']*)'", unknown["choices"])))
        raise UsageError(message, parser=self)


def unknown_command_hint(word: str, choices: Sequence[str]) -> str:
    """'did you mean 'get'? ...': the closest one-shot command, as the console suggests one."""
    close = difflib.get_close_matches(word.lower(), list(choices), n=1)
    suggestion = f"did you mean '{close[0]}'? " if close else ""
    return suggestion + "'run_client.py --help' lists the commands"


def report_usage(error: UsageError) -> int:
    """argparse's complaint on stderr: the parser's usage, then 'PROG: error: MESSAGE' (and 'hint: ...'
    when there is one); returns 2."""
    error.parser.print_usage(sys.stderr)
    print(f"{error.parser.prog}: error: {error}", file=sys.stderr)
    if getattr(error, "hint", None):
        print(f"hint: {error.hint}", file=sys.stderr)
    return EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    """``run_client.py``'s parser: the main options, then an optional one-shot command with its own."""
    parser = Parser(prog="run_client.py", description="Talk to an rmi_kv cluster. Without a command: the "
                     "interactive console on a terminal, or a script of commands read from stdin.",
                     epilog="exit codes: 0 success, 1 key not found, 2 usage error, 3 aborted, "
                     "4 cluster unavailable, 5 outcome unknown, "
                     f"{EXIT_UNHEALTHY} cluster unhealthy (status, health: a member is unreachable, not serving, "
                     "catching up, in doubt for more than a moment, or holds different data; verify: a member's data does not "
                     "match its digest), 8 compare failed (cas, txn with guards: nothing written), "
                     f"{EXIT_INTERRUPTED} interrupted, 141 the reader of the output went away (as after SIGPIPE, "
                     "e.g. '... | head'; nothing on stderr). The benchmark: run_client.py bench --help")
    parser.add_argument("--ns-host", default=DEFAULT_NS_HOST, help="name server address (default %(default)s)")
    parser.add_argument("--ns-port", type=options.port(), default=DEFAULT_NS_PORT,
                        help="name server port (default %(default)s)")
    parser.add_argument("--replica", help="replica to ask (default: any registered replica)")
    parser.add_argument("--timeout", type=options.seconds(), default=10.0,
                        help="seconds to wait for an answer (default %(default)s)")
    parser.add_argument("--log-file", help="log every request and response, with millisecond timestamps, here")
    parser.add_argument("--tls-dir", metavar="DIR", help="mutual TLS with the client certificate in DIR")
    parser.add_argument("--demo", action="store_true",
                        help="the course-style walkthrough (python run_client.py --demo --help for its options)")
    parser.add_argument("--web", action="store_true",
                        help="a live web view of the cluster, with controls for one it starts itself "
                             "(python run_client.py --web --help for its options)")
    parser.add_argument("-f", "--file", help="run the commands in FILE, one a line ('-': stdin)")
    parser.add_argument("--keep-going", action="store_true", help="in a script, go on after a failed command")
    parser.add_argument("-i", "--interactive", action="store_true",
                        help="open the console even when stdin is not a terminal")
    _add_output_options(parser, default=False)
    _add_trace_option(parser, default=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    shared = Parser(add_help=False)
    _add_output_options(shared, default=argparse.SUPPRESS)
    writes = Parser(add_help=False, parents=[shared])
    _add_trace_option(writes, default=argparse.SUPPRESS)
    put = commands.add_parser("put", aliases=["set"], parents=[writes], help="set KEY to VALUE on every replica "
                              "(set: the redis name)")
    put.add_argument("key", help="the key (any text, up to 1024 bytes)")
    put.add_argument("value", help="its new value (any text; quote it when it has spaces)")
    get = commands.add_parser("get", parents=[shared], help="print the value of KEY (or of every key under --prefix)",
                              description="Print the value of KEY; with --prefix, each key starting with PREFIX "
                              "and its value (a key line, then a value line, as etcdctl does), a page at a time.")
    get.add_argument("key", nargs="?", help="the key to read")
    get.add_argument("--prefix", metavar="PREFIX", help="read every key starting with PREFIX instead")
    get.add_argument("--limit", type=parse_limit, default=KEYS_LIMIT, metavar="N",
                     help="with --prefix: keys per page (default %(default)s)")
    get.add_argument("--after", metavar="KEY", help="with --prefix: only the keys after KEY (the page before's last)")
    delete = commands.add_parser("delete", aliases=["del"], parents=[writes],
                                 help="delete KEY on every replica, or every key under --prefix (del: the redis name)",
                                 description="Delete KEY on every replica; with --prefix, every key starting with "
                                 "PREFIX in one atomic transaction, and say how many.")
    delete.add_argument("key", nargs="?", help="the key to delete")
    delete.add_argument("--prefix", metavar="PREFIX", help="delete every key starting with PREFIX instead")
    exists = commands.add_parser("exists", parents=[shared], help="print 1 when KEY has a value (exit 0), else 0 "
                                 "(exit 1)")
    exists.add_argument("key", help="the key to look for")
    commands.add_parser("ping", parents=[shared], help="a round trip to the replica: PONG, its name, the latency")
    count = commands.add_parser("count", parents=[shared], help="how many keys there are (starting with PREFIX)")
    count.add_argument("prefix", nargs="?", default="", help="count only the keys starting with it")
    cas = commands.add_parser("cas", parents=[writes], help="set KEY to NEW only if it holds EXPECTED now",
                              description="Compare-and-set through two-phase commit: every replica checks, under "
                              "the key's lock, that KEY holds EXPECTED (the word absent: no value) before NEW is "
                              "written. A failed compare writes nothing and exits with 8.")
    cas.add_argument("key", help="the key to set")
    cas.add_argument("expected", help="the value it must hold now, or absent")
    cas.add_argument("new", help="the value to set")
    txn = commands.add_parser("txn", parents=[writes], help="several writes atomically: txn [if K == V,] put K V, "
                              "delete K, ...")
    txn.add_argument("words", nargs="+", metavar="WRITE", help="'put KEY VALUE' or 'delete KEY', separated by commas, "
                     "after any guards 'if KEY == VALUE' or 'if KEY != VALUE' (VALUE absent: no value)")
    keys = commands.add_parser("keys", parents=[shared], help="list keys (optionally those starting with PREFIX)",
                               description="List the keys in order, a page at a time. When there are more, "
                               "stderr says how to get the next page: --after KEY, like SCAN's cursor.")
    keys.add_argument("prefix", nargs="?", default="", help="only the keys starting with PREFIX (default: all)")
    keys.add_argument("--limit", type=parse_limit, default=KEYS_LIMIT, metavar="N",
                      help="keys per page (default %(default)s)")
    keys.add_argument("--after", metavar="KEY", help="only the keys after KEY: the last key of the page before")
    watch = commands.add_parser("watch", parents=[shared], help="print every change to KEY (or --prefix P) "
                                "as it happens, until Ctrl-C",
                                description="Print every change committed to KEY, or to the keys starting with "
                                "PREFIX, as it happens: time, key, new value or deleted, txid (with --json: one "
                                "document a line). Runs until Ctrl-C (exit code 130); reconnects by itself and "
                                "says whether changes may have been missed.")
    watched = watch.add_mutually_exclusive_group(required=True)
    watched.add_argument("key", nargs="?")
    watched.add_argument("--prefix", metavar="PREFIX", help="watch every key starting with PREFIX ('' for all)")
    commands.add_parser("status", parents=[shared], help="show every member's state, and what is wrong")
    commands.add_parser("health", parents=[shared], help="is every member healthy? one line each, then the verdict")
    commands.add_parser("verify", parents=[shared], help="every member checks its data against its digest now")
    member = commands.add_parser("member", parents=[shared], help="member list: every member's name, URI, role")
    member.add_argument("action", choices=["list"], help="list: every member's name, URI, reachability and role")
    snapshot = commands.add_parser("snapshot", parents=[shared], help="save a consistent copy of the committed "
                                   "data to FILE, or show FILE's keys, size and digest",
                                   description="save: copy the committed data of the replica asked (--replica) or "
                                   "any, consistently, while writes go on; status: read FILE (no cluster needed). "
                                   "run_server.py --restore FILE starts a new cluster from it.")
    snapshot.add_argument("action", choices=["save", "status"], help="save FILE, or show the status of FILE")
    snapshot.add_argument("snapshot_file", metavar="FILE", help="the snapshot file")
    return parser


def _add_output_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """-w/--json/--raw/--no-color/--debug, accepted before the command and after it
    (after it, the default is SUPPRESS so that it does not undo the one before)."""
    flag = {"action": "store_true", "default": default}
    parser.add_argument("-w", "--write-out", choices=OUTPUT_FORMATS, default=None if default is False else default,
                        help="how results are written: simple (values as they are, one key a line), table, "
                        "or json (as --json) (default simple)")
    parser.add_argument("--json", help="print one JSON document per result (errors as JSON on stderr); "
                        "the same as -w json", **flag)
    parser.add_argument("--raw", help="values and keys without quotes (in the console and in tables)", **flag)
    parser.add_argument("--no-color", help="no colours (the NO_COLOR variable does the same)", **flag)
    parser.add_argument("--debug", help="show tracebacks and every request on stderr", **flag)


def _add_trace_option(parser: argparse.ArgumentParser, default: Any) -> None:
    """--trace: offered before any command and after a write (a read has no round to show)."""
    parser.add_argument("--trace", action="store_true", default=default,
                        help="after a write, show its two-phase commit round")


def write_out(args: argparse.Namespace) -> str:
    """The output format asked for: -w, else json with --json, else simple."""
    return args.write_out or ("json" if args.json else "simple")


def command_from_args(args: argparse.Namespace) -> Command:
    """The one-shot command as a Command (the same the console would run)."""
    name = ALIASES.get(args.command, args.command)
    if name == "txn":
        return parse_txn(argv_words(args.words))
    if name == "keys":
        return Command("keys", (args.prefix,) if args.prefix else (), limit=args.limit, after=args.after)
    if name in ("get", "delete") and (args.prefix is None) == (args.key is None):
        raise UsageError(f"{name} takes a KEY or --prefix PREFIX (one of them)",
                         hint=f"for example: {HELP[name].example}")
    if name in ("get", "delete") and args.prefix is not None:
        return Command(name, (), prefix=args.prefix, limit=getattr(args, "limit", KEYS_LIMIT),
                       after=getattr(args, "after", None))
    if name == "cas":
        return parse_words(["cas", args.key, args.expected, args.new])
    if name == "count":
        return Command("count", (args.prefix,) if args.prefix else ())
    if args.command == "watch":
        return Command("watch", ("key", args.key) if args.prefix is None else ("prefix", args.prefix))
    arguments = {"put": ("key", "value"), "get": ("key",), "delete": ("key",), "status": (), "health": (),
                 "verify": (), "member": ("action",), "exists": ("key",), "ping": (),
                 "snapshot": ("action", "snapshot_file")}[name]
    return Command(name, tuple(getattr(args, argument) for argument in arguments))


def bench_arguments(argv: Sequence[str]) -> Optional[list[str]]:
    """What follows ``bench`` when it is the first command word, else None."""
    index = 0
    while index < len(argv):
        word = argv[index]
        if word in _VALUE_OPTIONS:
            index += 2
        elif word.startswith("-"):
            index += 1
        else:
            return list(argv[index + 1:]) if word == "bench" else None
    return None

