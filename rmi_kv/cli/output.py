"""How script mode and the one-shot commands print (``-w``): plain text for people and pipes
(``simple``), tables (``table``), or JSON (``json``, ``--json``).

Every output has ``show(result)``, ``session(command, detail)`` and
``fail(error)``; ``rmi_kv.cli.render`` builds what the plain one prints and
``rmi_kv.cli.tables`` the tables; ``make_output`` picks one by its name.
"""
from __future__ import annotations

import errno
import json
import os
from typing import Any, Optional, TextIO

from rich.console import Console
from rich.text import Text

from rmi_kv.cli.commands import CLUSTER_COMMANDS, Command, UsageError, next_page
from rmi_kv.cli.documents import error_document, result_document
from rmi_kv.cli.execute import Result
from rmi_kv.cli.failures import traceback_text
from rmi_kv.cli.render import (answer_text, emit, error_lines, help_renderable, latency_text, report_renderables,
                               trace_renderable)
from rmi_kv.cli.snapshots import snapshot_line
from rmi_kv.cli.tables import result_table
from rmi_kv.errors import KeyNotFound


class PlainOutput:
    """Results as plain text on stdout, for people and for scripts that read
    them (a value is printed as it is); errors coloured on stderr."""

    name = "simple"
    #: values and keys without quotes: what simple output does anyway (tables heed it)
    raw = False

    def __init__(self, out: Console, err: Console, *, debug: bool = False) -> None:
        self.out, self.err, self.debug = out, err, debug

    def show(self, result: Result, *, line: Optional[int] = None) -> None:
        """A result: a value or key as it is, OK or deleted, or the report of status, health, member list."""
        if result.error is not None:
            self.fail(result.error, command=result.command, line=line)
            return
        payload, name = result.payload, result.command.name
        if name == "get" and "items" in payload:
            for item in payload["items"]:  # a key line, then a value line (as etcdctl prints them)
                self._raw(item["key"])
                self._raw(item["value"])
            self._more(payload, len(payload["items"]), line)
        elif name == "get":
            self._raw(payload["value"])
        elif name == "keys":
            for key in payload["keys"]:
                self._raw(key)
            self._more(payload, len(payload["keys"]), line)
        elif name == "count":
            self._raw(str(payload["count"]))
        elif name == "delete" and "prefix" in payload:
            self._raw(str(payload["deleted"]))
        elif name == "snapshot":
            emit(self.out, snapshot_line(payload))
        elif name in CLUSTER_COMMANDS:
            for renderable in report_renderables(name, payload):
                emit(self.out, renderable)
        elif name == "exists":
            self._raw("1" if payload["exists"] else "0")
        elif name == "ping":
            emit(self.out, answer_text(result) + latency_text(result.latency_ms))
        else:
            self._raw({"put": "OK", "delete": "deleted", "txn": "OK", "cas": "OK"}[name])
        self._trace(result)

    def _trace(self, result: Result) -> None:
        if result.trace is not None:
            emit(self.out, trace_renderable(result.trace))

    def _more(self, payload: dict, shown: int, line: Optional[int]) -> None:
        """A cut page: on stderr (stdout holds the keys only, for whatever reads them), the next page's command."""
        if payload["more"]:
            program = "run_client.py " if line is None else ""
            emit(self.err, Text(f"(showing {shown} keys; more after {payload['next_after']!r}: "
                                f"{program}{next_page(payload)})", "dim"))

    def session(self, command: Command, detail: dict) -> None:
        """A session command of a script (use, trace, output, raw, help): silent but help."""
        if command.name == "help":
            emit(self.out, help_renderable(detail.get("topic")))

    def fail(self, error: BaseException, *, command: Optional[Command] = None, line: Optional[int] = None) -> None:
        """The error and its hint on stderr (after 'line N: ' in a script); the traceback with --debug."""
        for index, text in enumerate(error_lines(error)):
            emit(self.err, Text(f"line {line}: ") + text if line is not None and index == 0 else text)
        if self.debug and not isinstance(error, (UsageError, KeyNotFound)):
            emit(self.err, Text(traceback_text(error), "dim"))

    def _raw(self, text: str) -> None:
        self.out.file.write(text + "\n")
        self.out.file.flush()


class TableOutput(PlainOutput):
    """Results as tables (``-w table``): a key/value table for get, keys, txn and exists, the report
    tables of status, health, verify and member list; a command without a table shows as ``simple``.
    ``raw``: values and keys in the cells without quotes."""

    name = "table"

    def __init__(self, out: Console, err: Console, *, debug: bool = False, raw: bool = False) -> None:
        super().__init__(out, err, debug=debug)
        self.raw = raw

    def show(self, result: Result, *, line: Optional[int] = None) -> None:
        table = result_table(result, raw=self.raw)
        if table is None:
            super().show(result, line=line)
            return
        emit(self.out, table)
        if result.command.name == "keys" or "items" in result.payload:
            self._more(result.payload, len(result.payload.get("keys", result.payload.get("items", []))), line)
        self._trace(result)


class JsonOutput:
    """One JSON document per result on stdout; failures as JSON on stderr."""

    name = "json"
    #: JSON strings are always quoted: kept only to be handed on by 'output'
    raw = False

    def __init__(self, out: TextIO, err: TextIO, *, debug: bool = False) -> None:
        self.out, self.err, self.debug = out, err, debug

    def show(self, result: Result, *, line: Optional[int] = None) -> None:
        """A result as one document on stdout, a failed one on stderr."""
        if result.error is not None:
            self.fail(result.error, command=result.command, line=line)
        else:
            self._write(self.out, result_document(result, **_line(line)))

    def session(self, command: Command, detail: dict) -> None:
        """A session command of a script (use, trace, output, raw, help) and what it set."""
        self._write(self.out, {"ok": True, "command": command.name, **detail})

    def fail(self, error: BaseException, *, command: Optional[Command] = None, line: Optional[int] = None) -> None:
        """The failure as one document on stderr (with its traceback under --debug)."""
        extra = _line(line)
        if self.debug:
            extra["traceback"] = traceback_text(error)
        self._write(self.err, error_document(error, command=command, **extra))

    @staticmethod
    def _write(stream: TextIO, document: dict) -> None:
        stream.write(json.dumps(document, ensure_ascii=False) + "\n")
        stream.flush()


def _line(line: Optional[int]) -> dict:
    return {} if line is None else {"line": line}


def make_output(write_out: str, out: Console, err: Console, *, debug: bool = False, raw: bool = False) -> Any:
    """The output named by ``-w`` (``simple``, ``table``, ``json``)."""
    if write_out == "json":
        return JsonOutput(out.file, err.file, debug=debug)
    if write_out == "table":
        return TableOutput(out, err, debug=debug, raw=raw)
    return PlainOutput(out, err, debug=debug)


class _PipedConsole(Console):
    """A rich console that leaves a closed pipe to ``main`` (rich itself would exit 1, which means
    'key not found')."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, "the reader of the output went away")


def make_consoles(*, no_color: bool) -> tuple[Console, Console]:
    """rich consoles for stdout and stderr; no colour with --no-color or NO_COLOR."""
    settings: dict[str, Any] = {"highlight": False, "emoji": False}
    if no_color or os.environ.get("NO_COLOR"):
        settings["color_system"] = None
    return _PipedConsole(**settings), _PipedConsole(stderr=True, **settings)
