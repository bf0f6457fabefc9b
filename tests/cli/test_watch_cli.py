"""The watch command's parsing and printing, in every front end, with a fake client."""
from __future__ import annotations

import io
import json
from typing import Optional

import pytest
from rich.console import Console

from rmi_kv.cli.arguments import build_parser, command_from_args
from rmi_kv.cli.commands import Command, UsageError, parse_line
from rmi_kv.cli.console import ReplicaConsole
from rmi_kv.cli.output import JsonOutput, PlainOutput
from rmi_kv.cli.script import ScriptSession, run_script
from rmi_kv.cli.watching import clock_time, run_watch
from rmi_kv.errors import ReplicaUnavailable

AT = 1_700_000_000.25
EVENTS = [
    {"type": "watching", "replica": "replica2", "target": "user:", "prefix": True, "cursor": {"boot": "b1", "seq": 4}},
    {"type": "change", "replica": "replica2", "seq": 5, "key": "user:1", "value": "blue sky", "deleted": False,
     "txid": "replica3:ab:1:9", "committed_at": AT},
    {"type": "lost", "replica": "replica2", "error": "replica replica2 did not answer", "since": AT},
    {"type": "resumed", "replica": "replica2", "previous": "replica2", "missed": True, "since": AT,
     "resumed_from": {"boot": "b2", "seq": 0}},
    {"type": "change", "replica": "replica2", "seq": 1, "key": "user:1", "value": None, "deleted": True,
     "txid": "replica1:cd:2:9", "committed_at": AT + 1},
]


class FakeClient:
    """A client whose watch yields ``events`` then stops as Ctrl-C would."""

    def __init__(self, events=EVENTS, failure: Optional[Exception] = None) -> None:
        self.events, self.failure, self.asked, self.closed = list(events), failure, [], False

    def watch(self, target: str, *, prefix: bool = False):
        self.asked.append((target, prefix))
        if self.failure is not None:
            raise self.failure
        yield from self.events
        raise KeyboardInterrupt

    def ping(self) -> str:
        return "replica2"

    def replicas(self, refresh: bool = False) -> dict:
        return {"replica2": "PYRO:x@127.0.0.1:1"}

    def get(self, key: str) -> str:
        return "v"

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("line, argv, args", [
    ("watch color", ["watch", "color"], ("key", "color")),
    ("watch --prefix user:", ["watch", "--prefix", "user:"], ("prefix", "user:")),
    ("watch --prefix ''", ["watch", "--prefix", ""], ("prefix", "")),
])
def test_watch_lines_parse_the_same_in_the_console_scripts_and_one_shot(line, argv, args):
    assert parse_line(line) == Command("watch", args)
    assert command_from_args(build_parser().parse_args(argv)) == Command("watch", args)


@pytest.mark.parametrize("line", ["watch", "watch a b", "watch --prefix", "watch --prefix a b"])
def test_a_malformed_watch_says_how_it_is_written(line):
    with pytest.raises(UsageError, match="usage: watch KEY"):
        parse_line(line)


def test_json_output_is_one_document_per_event_and_per_notice():
    out, err = io.StringIO(), io.StringIO()
    kv = FakeClient()
    with pytest.raises(KeyboardInterrupt):
        run_watch(kv, Command("watch", ("prefix", "user:")), JsonOutput(out, err))
    documents = [json.loads(line) for line in out.getvalue().splitlines()]
    assert kv.asked == [("user:", True)]
    assert [d["event"] for d in documents] == ["watching", "change", "lost", "resumed", "change"]
    assert all(d["ok"] and d["command"] == "watch" for d in documents)
    change = documents[1]
    assert (change["key"], change["value"], change["txid"], change["time"]) == (
        "user:1", "blue sky", "replica3:ab:1:9", clock_time(AT))
    assert documents[3]["missed"] is True and documents[3]["since_time"] == clock_time(AT)
    assert documents[4]["deleted"] is True and err.getvalue() == ""


def test_plain_output_prints_changes_on_stdout_and_notices_on_stderr():
    out, err = io.StringIO(), io.StringIO()
    output = PlainOutput(Console(file=out, color_system=None, width=200), Console(file=err, color_system=None,
                                                                                  width=200))
    with pytest.raises(KeyboardInterrupt):
        run_watch(FakeClient(), Command("watch", ("prefix", "user:")), output)
    assert out.getvalue().splitlines() == [
        f'{clock_time(AT)}  user:1  "blue sky"  replica3:ab:1:9',
        f"{clock_time(AT + 1)}  user:1  deleted  replica1:cd:2:9"]
    notices = err.getvalue()
    assert "watching keys starting with 'user:' at replica2" in notices
    assert "lost replica2" in notices
    assert f"may have missed changes committed after {clock_time(AT)}" in notices
    assert "from position 0" in notices


def test_a_watch_that_cannot_start_fails_with_the_exit_code_of_its_error():
    out, err = io.StringIO(), io.StringIO()
    error = ReplicaUnavailable("replica replica9 is unreachable")
    assert run_watch(FakeClient(failure=error), Command("watch", ("key", "k")), JsonOutput(out, err)) == 4
    assert json.loads(err.getvalue())["message"] == "replica replica9 is unreachable"


def test_a_script_runs_its_watch_until_ctrl_c():
    out, err = io.StringIO(), io.StringIO()
    session = ScriptSession(lambda replica: FakeClient(), JsonOutput(out, err))
    with pytest.raises(KeyboardInterrupt):  # run_client.py turns it into exit code 130
        run_script(["watch --prefix user:\n", "get k\n"], session)
    assert len(out.getvalue().splitlines()) == len(EVENTS)


def test_the_console_watches_until_ctrl_c_then_goes_back_to_the_prompt():
    transcript = io.StringIO()
    clients: list[FakeClient] = []

    def connect(replica):
        clients.append(FakeClient())
        return clients[-1]

    console = ReplicaConsole(connect, Console(file=transcript, color_system=None, width=200),
                             io.StringIO("watch --prefix user:\nget k\n"), replica="replica2")
    assert console.run() == 0
    text = transcript.getvalue()
    assert f'{clock_time(AT)}  user:1  "blue sky"  replica3:ab:1:9' in text
    assert "stopped watching" in text
    assert text.index("stopped watching") < text.rindex("v")  # the next command ran
    assert all(client.closed for client in clients)
