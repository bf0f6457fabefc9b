"""``run_client.py``: the console, one-shot commands, script mode, the benchmark, the web view.

    run_client.py                              the console (on a terminal)
    run_client.py [--replica R] get KEY        one command, then exit
    run_client.py --file FILE                  a script: one command a line, # comments
    printf 'put a 1\\nget a\\n' | run_client.py  the same, from stdin
    run_client.py bench ...                    the benchmark (rmi_kv.bench)
    run_client.py --web                        the live web view (rmi_kv.web)

Exit codes: 0 success, 1 key not found, 2 usage error, 3 aborted,
4 cluster unavailable (no name server, or no replica to ask), 5 outcome
unknown, 6 cluster unhealthy (status or health: a member is unreachable, not
serving, catching up, in doubt for more than a moment, or holds different
data; verify: a member's data does not match its digest), 8 compare failed
(cas, txn with guards: nothing was written), 130 interrupted, 141 the reader of the output went away (``... |
head``: quietly, as a tool killed by SIGPIPE). A script stops at its first
failure with that failure's code; with --keep-going it runs every line and
exits with the first failure's code.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Callable, Iterable, Optional, Sequence

from rich.console import Console

from rmi_kv.cli.arguments import (EXIT_CLOSED_PIPE, EXIT_INTERRUPTED, EXIT_USAGE, bench_arguments, build_parser,
                                  command_from_args, report_usage, write_out)
from rmi_kv.cli.commands import UsageError
from rmi_kv.cli.console import open_console
from rmi_kv.cli.execute import execute
from rmi_kv.cli.failures import exit_code_of
from rmi_kv.cli.output import JsonOutput, make_consoles, make_output
from rmi_kv.cli.script import ScriptSession, run_script


def setup_client_logging(log_file: Optional[str], *, debug: bool) -> None:
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
        if error.name != "rmi_kv.bench":
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
    if "--web" in argv:
        from rmi_kv.web import cli as web

        return web.main([word for word in argv if word != "--web"])
    rest = bench_arguments(argv)
    if rest is not None:
        return run_bench(rest)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        return _usage_failure(error, json_mode=_asks_for_json(argv))
    no_color = args.no_color or bool(os.environ.get("NO_COLOR"))
    out, err = make_consoles(no_color=no_color)

    def outputs(name: str) -> Any:
        return make_output(name, out, err, debug=args.debug, raw=args.raw)

    args.outputs = outputs
    output: Any = outputs(write_out(args))
    setup_client_logging(args.log_file, debug=args.debug)
    from rmi_kv.wire.client import KeyValueClient

    def connect(replica: Optional[str]) -> KeyValueClient:
        return KeyValueClient(args.ns_host, args.ns_port, replica=replica, timeout=args.timeout,
                              tls_dir=args.tls_dir)

    try:
        return _dispatch(args, connect, output, out, no_color=no_color)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise  # not a failure to report: main() ends quietly
    except Exception as error:  # not an rmi_kv error: a bug or a surprise; still no traceback unless --debug
        output.fail(error)
        return exit_code_of(error)


def _dispatch(args: argparse.Namespace, connect: Callable, output: Any, out: Console, *, no_color: bool) -> int:
    if args.command is not None and args.file:
        raise UsageError("give either a command or --file, not both")
    if args.command is not None:
        return _one_shot(args, connect, output)
    if args.file:
        return _script_file(args, connect, output)
    if args.interactive or sys.stdin.isatty():
        return open_console(connect, out, replica=args.replica, debug=args.debug, color=not no_color,
                            write_out=write_out(args), raw=args.raw).run()
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
    if command.name == "watch":
        from rmi_kv.cli.watching import run_watch

        with connect(args.replica) as kv:
            return run_watch(kv, command, output)
    with connect(args.replica) as kv:
        result = execute(kv, command, trace=args.trace)
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
    session = ScriptSession(connect, output, replica=args.replica, trace=args.trace, outputs=args.outputs)
    try:
        return run_script(lines, session, keep_going=args.keep_going)
    finally:
        session.close()


def _asks_for_json(argv: Sequence[str]) -> bool:
    """--json, -w json, --write-out json (or =json) somewhere on a command line argparse refused."""
    joined = [f"{word} {after}" for word, after in zip(argv, [*argv[1:], ""])]
    return "--json" in argv or any(pair in ("-w json", "--write-out json") for pair in joined) \
        or any(word in ("-wjson", "--write-out=json") for word in argv)


def _usage_failure(error: UsageError, json_mode: bool) -> int:
    """argparse's complaint: its usage and message, or a JSON document with --json."""
    if not json_mode:
        return report_usage(error)
    JsonOutput(sys.stdout, sys.stderr).fail(error)
    return EXIT_USAGE


class _NullStream:
    def write(self, _text: str) -> None:
        pass

    def flush(self) -> None:
        pass


if __name__ == "__main__":
    sys.exit(main())
