"""The ``watch`` command: every committed change to a key or prefix, printed as it happens.

It runs until Ctrl-C, in every front end: the one-shot command and script
mode print each change as one line on stdout (``--json``: one document a
line, notices too; plain: notices on stderr), the console prints into its
transcript and goes back to the prompt on Ctrl-C. The long poll and the
reconnecting are ``KeyValueClient.watch``'s.
"""
from __future__ import annotations

import datetime
import json
from typing import Any, Callable, Optional

from rich.console import Console
from rich.text import Text

from rmi_kv.cli.commands import Command
from rmi_kv.cli.failures import exit_code_of
from rmi_kv.cli.output import JsonOutput
from rmi_kv.cli.render import emit
from rmi_kv.errors import RmiKvError

Show = Callable[[dict], None]


def clock_time(seconds: Optional[float]) -> str:
    """A wall time as people read it: local date and time to the millisecond."""
    if seconds is None:
        return "-"
    return datetime.datetime.fromtimestamp(seconds).isoformat(sep=" ", timespec="milliseconds")


def follow(kv: Any, command: Command, show: Show) -> None:
    """Show every event of the watch ``command`` asks for; returns only when the client's
    watch ends (Ctrl-C raises KeyboardInterrupt through it; a first connection that fails
    raises its rmi_kv error)."""
    kind, target = command.args
    for event in kv.watch(target, prefix=kind == "prefix"):
        show(event)


def describe_target(event: dict) -> str:
    if not event["prefix"]:
        return f"key {event['target']!r}"
    return f"keys starting with {event['target']!r}" if event["target"] else "every key"


def change_line(event: dict) -> str:
    """A change as one line: time, key, new value (JSON-quoted) or deleted, txid."""
    value = "deleted" if event["deleted"] else json.dumps(event["value"], ensure_ascii=False)
    return f"{clock_time(event['committed_at'])}  {event['key']}  {value}  {event['txid']}"


def notice_text(event: dict) -> Text:
    """What a notice (watching, lost, resumed) says to people."""
    kind = event["type"]
    if kind == "watching":
        return Text(f"watching {describe_target(event)} at {event['replica']} (Ctrl-C to stop)", "dim")
    if kind == "lost":
        where = event["replica"] or "the replica"
        return Text(f"lost {where} ({event['error']}); reconnecting by itself", "yellow")
    resumed_from = event["resumed_from"]
    where = f"resumed at {event['replica']} from position {resumed_from['seq']} of its feed"
    if event["missed"]:
        return Text(f"{where}: may have missed changes committed after {clock_time(event['since'])}", "bold yellow")
    return Text(f"{where}: nothing missed", "green")


def event_document(event: dict) -> dict:
    """An event as one JSON document (``--json``)."""
    document = {"ok": True, "command": "watch", "event": event["type"]}
    document.update((name, value) for name, value in event.items() if name != "type")
    for name, readable in (("committed_at", "time"), ("since", "since_time")):
        if document.get(name) is not None:
            document[readable] = clock_time(document[name])
    return document


def run_watch(kv: Any, command: Command, output: Any) -> int:
    """The watch for the one-shot command and script mode, printed with ``output`` (a
    ``PlainOutput`` or ``JsonOutput``); runs until Ctrl-C, or returns the exit code of a
    failure to start."""
    show = _json_printer(output.out) if isinstance(output, JsonOutput) else _plain_printer(output)
    try:
        follow(kv, command, show)
    except RmiKvError as error:
        output.fail(error, command=command)
        return exit_code_of(error)
    return 0


def _json_printer(stream: Any) -> Show:
    def show(event: dict) -> None:
        stream.write(json.dumps(event_document(event), ensure_ascii=False) + "\n")
        stream.flush()

    return show


def _plain_printer(output: Any) -> Show:
    def show(event: dict) -> None:
        if event["type"] == "change":
            output.out.file.write(change_line(event) + "\n")
            output.out.file.flush()
        else:
            emit(output.err, notice_text(event))

    return show


def console_watch(kv: Any, command: Command, console: Console) -> Optional[RmiKvError]:
    """The watch in the console: events in the transcript until Ctrl-C, then back to the
    prompt. Returns the error that kept it from starting, if one did."""
    def show(event: dict) -> None:
        emit(console, Text(change_line(event)) if event["type"] == "change" else notice_text(event))

    try:
        follow(kv, command, show)
    except RmiKvError as error:
        return error
    except KeyboardInterrupt:
        emit(console, Text("stopped watching", "dim"))
    return None
