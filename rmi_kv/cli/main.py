"""``run_client.py``: the console, one-shot commands, script mode, the benchmark.

    run_client.py                              the console (on a terminal)
    run_client.py [--replica R] get KEY        one command, then exit
    run_client.py --file FILE                  a script: one command a line, # comments
    printf 'put a 1\\nget a\\n' | run_client.py  the same, from stdin
    run_client.py bench ...                    the benchmark (rmi_kv.bench)

Exit codes: 0 success, 1 key not found, 2 usage error, 3 aborted,
4 cluster unavailable (no name server, or no replica to ask), 5 outcome
unknown, 6 cluster unhealthy (status or health: a member is unreachable, not
serving, catching up, in doubt for more than a moment, or holds different
data), 130 interrupted, 141 the reader of the output went away (``... |
head``: quietly, as a tool killed by SIGPIPE). A script stops at its first
failure with that failure's code; with --keep-going it runs every line and
exits with the first failure's code.
"""
from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
import traceback
from typing import Any, Callable, Iterable, Optional, Sequence, TextIO

from rich.console import Console
from rich.text import Text

from rmi_kv import options
from rmi_kv.cli.commands import (CLUSTER_COMMANDS, HELP, KEYS_LIMIT, Command, Result, UsageError, argv_words, error_document,
                       execute, exit_code_of, next_page, parse_limit, parse_line, parse_txn, result_document)
from rmi_kv.config import DEFAULT_NS_HOST, DEFAULT_NS_PORT
from rmi_kv.cli.console import emit, error_lines, help_renderable, open_console, report_renderables, trace_renderable
from rmi_kv.errors import ClusterUnhealthy, KeyNotFound

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_ABORTED, EXIT_UNAVAILABLE, EXIT_UNKNOWN = 0, 1, 2, 3, 4, 5
EXIT_UNHEALTHY = ClusterUnhealthy.exit_code
EXIT_INTERRUPTED = 130
#: stdout's reader went away: what a shell reports for a tool killed by SIGPIPE (128 + 13)
EXIT_CLOSED_PIPE = 141

#: options of the main parser that take a value (to find the first positional word)
_VALUE_OPTIONS = frozenset({"--ns-host", "--ns-port", "--replica", "--timeout", "--log-file", "--tls-dir", "--file", "-f"})


class _Parser(argparse.ArgumentParser):
    """Raises UsageError (carrying the parser, to print its usage) instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message, parser=self)


# ------------------------------------------------------------------ parsing
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="run_client.py", description="Talk to an rmi_kv cluster. Without a command: the "
                     "interactive console on a terminal, or a script of commands read from stdin.",
                     epilog="exit codes: 0 success, 1 key not found, 2 usage error, 3 aborted, "
                     "4 cluster unavailable, 5 outcome unknown, "
                     f"{EXIT_UNHEALTHY} cluster unhealthy (status, health: a member is unreachable, not serving, "
                     "catching up, in doubt for more than a moment, or holds different data), "
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
    parser.add_argument("-f", "--file", help="run the commands in FILE, one a line ('-': stdin)")
    parser.add_argument("--keep-going", action="store_true", help="in a script, go on after a failed command")
    parser.add_argument("-i", "--interactive", action="store_true",
                        help="open the console even when stdin is not a terminal")
    _add_output_options(parser, default=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    shared = _Parser(add_help=False)
    _add_output_options(shared, default=argparse.SUPPRESS)
    put = commands.add_parser("put", parents=[shared], help="set KEY to VALUE on every replica")
    put.add_argument("key")
    put.add_argument("value")
    get = commands.add_parser("get", parents=[shared], help="print the value of KEY")
    get.add_argument("key")
    delete = commands.add_parser("delete", parents=[shared], help="delete KEY on every replica")
    delete.add_argument("key")
    txn = commands.add_parser("txn", parents=[shared], help="several writes atomically: txn put K V, delete K, ...")
    txn.add_argument("words", nargs="+", metavar="WRITE")
    keys = commands.add_parser("keys", parents=[shared], help="list keys (optionally those starting with PREFIX)",
                               description="List the keys in order, a page at a time. When there are more, "
                               "stderr says how to get the next page: --after KEY, like SCAN's cursor.")
    keys.add_argument("prefix", nargs="?", default="")
    keys.add_argument("--limit", type=parse_limit, default=KEYS_LIMIT, metavar="N",
                      help="keys per page (default %(default)s)")
    keys.add_argument("--after", metavar="KEY", help="only the keys after KEY: the last key of the page before")
    commands.add_parser("status", parents=[shared], help="show every member's state, and what is wrong")
    commands.add_parser("health", parents=[shared], help="is every member healthy? one line each, then the verdict")
    member = commands.add_parser("member", parents=[shared], help="member list: every member's name, URI, role")
    member.add_argument("action", choices=["list"])
    return parser


def _add_output_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """--json/--no-color/--debug/--trace, accepted before the command and after it
    (after it, the default is SUPPRESS so that it does not undo the one before)."""
    flag = {"action": "store_true", "default": default}
    parser.add_argument("--json", help="print one JSON document per result (errors as JSON on stderr)", **flag)
    parser.add_argument("--no-color", help="no colours (the NO_COLOR variable does the same)", **flag)
    parser.add_argument("--debug", help="show tracebacks and every request on stderr", **flag)
    parser.add_argument("--trace", help="after a write, show its two-phase commit round", **flag)


def command_from_args(args: argparse.Namespace) -> Command:
    """The one-shot command as a Command (the same the console would run)."""
    if args.command == "txn":
        return parse_txn(argv_words(args.words))
    if args.command == "keys":
        return Command("keys", (args.prefix,) if args.prefix else (), limit=args.limit, after=args.after)
    arguments = {"put": ("key", "value"), "get": ("key",), "delete": ("key",), "status": (), "health": (),
                 "member": ("action",)}[args.command]
    return Command(args.command, tuple(getattr(args, name) for name in arguments))


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


# ------------------------------------------------------------------- output
class PlainOutput:
    """Results as plain text on stdout, for people and for scripts that read
    them (a value is printed as it is); errors coloured on stderr."""

    def __init__(self, out: Console, err: Console, debug: bool = False) -> None:
        self.out, self.err, self.debug = out, err, debug

    def show(self, result: Result, line: Optional[int] = None) -> None:
        if result.error is not None:
            self.fail(result.error, result.command, line)
            return
        payload, name = result.payload, result.command.name
        if name == "get":
            self._raw(payload["value"])
        elif name == "keys":
            for key in payload["keys"]:
                self._raw(key)
            if payload["more"]:  # on stderr: stdout holds keys only, for whatever reads them
                program = "run_client.py " if line is None else ""
                emit(self.err, Text(f"(showing {len(payload['keys'])} keys; more after {payload['next_after']!r}: "
                                    f"{program}{next_page(payload)})", "dim"))
        elif name in CLUSTER_COMMANDS:
            for renderable in report_renderables(name, payload):
                emit(self.out, renderable)
        else:
            self._raw({"put": "OK", "delete": "deleted", "txn": "OK"}[name])
        if result.trace is not None:
            emit(self.out, trace_renderable(result.trace))

    def session(self, command: Command, detail: dict) -> None:
        """A session command of a script (use, trace, help): silent but help."""
        if command.name == "help":
            emit(self.out, help_renderable(detail.get("topic")))

    def fail(self, error: BaseException, command: Optional[Command] = None, line: Optional[int] = None) -> None:
        for index, text in enumerate(error_lines(error)):
            emit(self.err, Text(f"line {line}: ") + text if line is not None and index == 0 else text)
        if self.debug and not isinstance(error, (UsageError, KeyNotFound)):
            self.err.print(Text("".join(traceback.format_exception(type(error), error, error.__traceback__)), "dim"),
                           soft_wrap=True)

    def _raw(self, text: str) -> None:
        self.out.file.write(text + "\n")
        self.out.file.flush()


class JsonOutput:
    """One JSON document per result on stdout; failures as JSON on stderr."""

    def __init__(self, out: TextIO, err: TextIO, debug: bool = False) -> None:
        self.out, self.err, self.debug = out, err, debug

    def show(self, result: Result, line: Optional[int] = None) -> None:
        if result.error is not None:
            self.fail(result.error, result.command, line)
        else:
            self._write(self.out, result_document(result, **_line(line)))

    def session(self, command: Command, detail: dict) -> None:
        self._write(self.out, {"ok": True, "command": command.name, **detail})

    def fail(self, error: BaseException, command: Optional[Command] = None, line: Optional[int] = None) -> None:
        extra = _line(line)
        if self.debug:
            extra["traceback"] = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        self._write(self.err, error_document(error, command, **extra))

    @staticmethod
    def _write(stream: TextIO, document: dict) -> None:
        stream.write(json.dumps(document, ensure_ascii=False) + "\n")
        stream.flush()


def _line(line: Optional[int]) -> dict:
    return {} if line is None else {"line": line}


class _PipedConsole(Console):
    """A rich console that leaves a closed pipe to ``main`` (rich itself would exit 1, which means
    'key not found')."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, "the reader of the output went away")


def make_consoles(no_color: bool) -> tuple[Console, Console]:
    """rich consoles for stdout and stderr; no colour with --no-color or NO_COLOR."""
    settings: dict[str, Any] = {"highlight": False, "emoji": False}
    if no_color or os.environ.get("NO_COLOR"):
        settings["color_system"] = None
    return _PipedConsole(**settings), _PipedConsole(stderr=True, **settings)


# ------------------------------------------------------------------ running
class ScriptSession:
    """Runs commands one after another with one client, as a script does;
    ``use`` switches replica and ``trace`` turns tracing on or off."""

    def __init__(self, connect: Callable[[Optional[str]], Any], output: Any, replica: Optional[str] = None,
                 trace: bool = False) -> None:
        self.connect, self.output, self.trace = connect, output, trace
        self.kv = connect(replica)

    def run(self, command: Command, line: Optional[int] = None) -> int:
        """Run one command; returns its exit code."""
        if command.name in ("use", "trace", "help"):
            self.output.session(command, self._session_command(command))
            return EXIT_OK
        result = execute(self.kv, command, self.trace)
        self.output.show(result, line)
        return result.exit_code

    def _session_command(self, command: Command) -> dict:
        if command.name == "use":
            self.kv.close()
            self.kv = self.connect(command.args[0])
            return {"replica": command.args[0]}
        if command.name == "trace":
            if command.args:
                self.trace = command.args[0].lower() == "on"
            return {"trace": self.trace}
        topic = command.args[0].lower() if command.args else None
        return {"topic": topic, "commands": {name: entry.usage for name, entry in HELP.items()}}

    def close(self) -> None:
        self.kv.close()


def run_script(lines: Iterable[str], session: ScriptSession, keep_going: bool = False) -> tuple[int, int]:
    """Run each command line; returns (exit code of the first failure or 0,
    number of commands seen). Stops at the first failure unless ``keep_going``."""
    first_failure, seen = EXIT_OK, 0
    for number, line in enumerate(lines, 1):
        try:
            command = parse_line(line)
        except UsageError as error:
            session.output.fail(error, line=number)
            code = EXIT_USAGE
        else:
            if command is None:
                continue
            if command.name == "quit":
                break
            code = session.run(command, number)
        seen += 1
        first_failure = first_failure or code
        if code and not keep_going:
            break
    return first_failure, seen


def setup_client_logging(log_file: Optional[str], debug: bool) -> None:
    """--log-file: every request and response in a file; --debug: on stderr too."""
    if not (log_file or debug):
        return
    from rmi_kv.logs import setup_logging

    setup_logging("client", logging.WARNING, log_file, stream=sys.stderr if debug else _NullStream())
    logging.getLogger("rmi_kv.wire.client").setLevel(logging.DEBUG)


def run_bench(argv_rest: list[str]) -> int:
    """``run_client.py bench ...``: everything after ``bench`` goes to rmi_kv.bench."""
    try:
        from rmi_kv import bench
    except ModuleNotFoundError as error:
        if error.name != f"{__package__}.bench":
            raise
        print("error: the benchmark (rmi_kv.bench) is not part of this installation", file=sys.stderr)
        return EXIT_USAGE
    return int(bench.main(argv_rest) or 0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``run_client.py``'s command line (``argv`` without the program name); returns the exit code."""
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:
        return output_closed()


def output_closed() -> int:
    """The reader of stdout went away (``run_client.py keys | head``): not a failure. Like the tools
    people pipe from, say nothing and exit as SIGPIPE would have; stdout goes to /dev/null so
    that Python's last flush at exit cannot complain (the Python docs' recipe for SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_CLOSED_PIPE


def _main(argv: list[str]) -> int:
    if "--demo" in argv:
        from rmi_kv import demo

        return int(demo.main([word for word in argv if word != "--demo"]) or 0)
    rest = bench_arguments(argv)
    if rest is not None:
        return run_bench(rest)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        return _usage_failure(error, json_mode="--json" in argv)
    no_color = args.no_color or bool(os.environ.get("NO_COLOR"))
    out, err = make_consoles(no_color)
    output: Any = JsonOutput(sys.stdout, sys.stderr, args.debug) if args.json else PlainOutput(out, err, args.debug)
    setup_client_logging(args.log_file, args.debug)
    from rmi_kv.wire.client import KeyValueClient

    def connect(replica: Optional[str]) -> KeyValueClient:
        return KeyValueClient(args.ns_host, args.ns_port, replica=replica, timeout=args.timeout,
                              tls_dir=args.tls_dir)

    try:
        return _dispatch(args, connect, output, out, no_color)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise  # not a failure to report: main() ends quietly
    except Exception as error:  # not an rmi_kv error: a bug or a surprise; still no traceback unless --debug
        output.fail(error)
        return exit_code_of(error)


def _dispatch(args: argparse.Namespace, connect: Callable, output: Any, out: Console, no_color: bool) -> int:
    if args.command is not None and args.file:
        raise UsageError("give either a command or --file, not both")
    if args.command is not None:
        return _one_shot(args, connect, output)
    if args.file:
        return _script_file(args, connect, output)
    if args.interactive or sys.stdin.isatty():
        return open_console(connect, out, args.replica, args.debug, color=not no_color).run()
    code, seen = _script(sys.stdin, args, connect, output)
    if not seen:
        output.fail(UsageError("nothing to do: stdin held no commands",
                               hint="give a command (put, get, delete, txn, keys, status, health, member list), "
                                    "--file FILE, "
                                    "or run it on a terminal for the console"))
        return EXIT_USAGE
    return code


def _one_shot(args: argparse.Namespace, connect: Callable, output: Any) -> int:
    try:
        command = command_from_args(args)
    except UsageError as error:
        output.fail(error)
        return EXIT_USAGE
    with connect(args.replica) as kv:
        result = execute(kv, command, args.trace)
    output.show(result)
    return result.exit_code


def _script_file(args: argparse.Namespace, connect: Callable, output: Any) -> int:
    if args.file == "-":
        return _script(sys.stdin, args, connect, output)[0]
    try:
        stream = open(args.file, encoding="utf-8")
    except OSError as error:
        output.fail(UsageError(f"cannot read {args.file}: {error.strerror}", hint="check the path given to --file"))
        return EXIT_USAGE
    with stream:
        return _script(stream, args, connect, output)[0]


def _script(lines: Iterable[str], args: argparse.Namespace, connect: Callable, output: Any) -> tuple[int, int]:
    session = ScriptSession(connect, output, args.replica, args.trace)
    try:
        return run_script(lines, session, args.keep_going)
    finally:
        session.close()


def _usage_failure(error: UsageError, json_mode: bool) -> int:
    """argparse's complaint: its usage and message, or a JSON document with --json."""
    if json_mode:
        JsonOutput(sys.stdout, sys.stderr).fail(error)
    else:
        error.parser.print_usage(sys.stderr)
        print(f"{error.parser.prog}: error: {error}", file=sys.stderr)
    return EXIT_USAGE


class _NullStream:
    def write(self, _text: str) -> None:
        pass

    def flush(self) -> None:
        pass


if __name__ == "__main__":
    sys.exit(main())
