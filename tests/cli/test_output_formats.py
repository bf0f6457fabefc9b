"""-w simple|table|json, --raw, the redis names (set, del, exists, ping) and the one-shot did-you-mean,
on the fake cluster of the console tests (every latency 1.25 ms)."""
from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from cli.test_console import FakeCluster, expected, session
from rmi_kv.cli.arguments import build_parser, command_from_args, write_out
from rmi_kv.cli.commands import Command, UsageError, parse_line
from rmi_kv.cli.execute import execute
from rmi_kv.cli.output import make_output
from rmi_kv.cli.script import ScriptSession, run_script


def consoles(width: int = 80):
    out, err = io.StringIO(), io.StringIO()
    settings = {"width": width, "color_system": None, "highlight": False}
    return out, err, Console(file=out, **settings), Console(file=err, **settings)


def shown(write: str, cluster: FakeCluster, line: str, *, raw: bool = False) -> tuple[int, str, str]:
    """One command run and written out as ``-w write`` (as the one-shot commands do)."""
    out, err, out_console, err_console = consoles()
    result = execute(cluster.connect("replica1"), parse_line(line))
    make_output(write, out_console, err_console, raw=raw).show(result)
    return result.exit_code, trimmed(out.getvalue()), err.getvalue()


def trimmed(text: str) -> str:
    """Without the spaces rich pads a table's last column with."""
    return "".join(line.rstrip() + "\n" for line in text.splitlines())


def loaded(**data) -> FakeCluster:
    cluster = FakeCluster()
    cluster.data.update(data)
    return cluster


# ------------------------------------------------------------ parsing
@pytest.mark.parametrize("line, command", [
    ("set a 1", Command("put", ("a", "1"))),
    ("SET a 1", Command("put", ("a", "1"))),
    ("del a", Command("delete", ("a",))),
    ("exists a", Command("exists", ("a",))),
    ("ping", Command("ping")),
    ("output TABLE", Command("output", ("table",))),
    ("raw on", Command("raw", ("on",))),
    ("txn set a 1, del b", Command("txn", writes={"a": "1", "b": None})),
])
def test_the_redis_names_and_the_session_settings_parse(line, command):
    assert parse_line(line) == command


@pytest.mark.parametrize("line, message, hint", [
    ("txn get a", "'get' is not a write", "a transaction holds only writes"),
    ("txn put a 1 put b 2", "expected 'put KEY VALUE'", "separate the writes with commas"),
    ("txn delete", "'delete' needs a key", "for example"),
    ("output yaml", "usage: output simple|table|json", "output table"),
    ("raw maybe", "usage: raw on|off", "raw on"),
    ("exists", "usage: exists KEY", "exists color"),
])
def test_mistakes_get_the_hint_that_fits(line, message, hint):
    with pytest.raises(UsageError, match=message) as raised:
        parse_line(line)
    assert hint in raised.value.hint


def test_one_shot_options_names_and_the_unknown_command():
    parser = build_parser()
    assert write_out(parser.parse_args(["get", "a"])) == "simple"
    assert write_out(parser.parse_args(["--json", "get", "a"])) == "json"
    assert write_out(parser.parse_args(["get", "a", "-w", "table"])) == "table"
    assert write_out(parser.parse_args(["-w", "json", "keys", "--raw"])) == "json"
    assert parser.parse_args(["keys", "--raw"]).raw is True
    assert command_from_args(parser.parse_args(["set", "a", "1"])) == Command("put", ("a", "1"))
    assert command_from_args(parser.parse_args(["del", "a"])) == Command("delete", ("a",))
    assert command_from_args(parser.parse_args(["exists", "a"])) == Command("exists", ("a",))
    assert command_from_args(parser.parse_args(["ping"])) == Command("ping")
    assert parser.parse_args(["put", "a", "1", "--trace"]).trace is True
    for read in (["get", "a"], ["keys"], ["status"]):
        with pytest.raises(UsageError, match="unrecognized arguments: --trace"):
            parser.parse_args([*read, "--trace"])
    with pytest.raises(UsageError, match="unknown command 'gett'") as raised:
        parser.parse_args(["gett", "a"])
    assert raised.value.hint == "did you mean 'get'? 'run_client.py --help' lists the commands"
    with pytest.raises(UsageError) as raised:
        parser.parse_args(["frobnicate"])
    assert raised.value.hint == "'run_client.py --help' lists the commands"


def test_every_argument_of_put_and_keys_is_described():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name in ("put", "get", "delete", "exists", "txn", "keys", "member"):
        help_text = commands[name].format_help()
        positionals = [a for a in commands[name]._actions if not a.option_strings]
        assert all(action.help for action in positionals), name
        assert ("--trace" in help_text) == (name in ("put", "delete", "txn")), name


# ------------------------------------------------------------ one-shot and script output
def test_simple_writes_values_as_they_are_and_the_redis_answers():
    cluster = loaded(color="blue sky")
    assert shown("simple", cluster, "get color") == (0, "blue sky\n", "")
    assert shown("simple", cluster, "exists color") == (0, "1\n", "")
    assert shown("simple", cluster, "exists nothing") == (1, "0\n", "")
    code, out, err = shown("simple", cluster, "ping")
    assert code == 0 and out.startswith("PONG from replica1 (") and out.endswith(" ms)\n")
    assert shown("simple", cluster, "set a 1")[:2] == (0, "OK\n")
    assert shown("simple", cluster, "del a")[:2] == (0, "deleted\n")
    assert "a" not in cluster.data


def test_table_shows_keys_and_values_in_cells_quoted_unless_raw():
    cluster = loaded(color="blue sky", **{"user:1": "ann"})
    assert shown("table", cluster, "get color")[1] == expected("""
        key      value
        ───────────────────
        "color"  "blue sky"
        """)
    assert shown("table", cluster, "get color", raw=True)[1] == expected("""
        key    value
        ───────────────
        color  blue sky
        """)
    assert shown("table", cluster, "keys", raw=True)[1] == expected("""
        #  key
        ─────────
        1  color
        2  user:1
        """)
    assert shown("table", cluster, "txn put a 1, delete color")[1] == expected("""
        write   key      value
        ──────────────────────
        put     "a"      "1"
        delete  "color"  —
        """)
    assert shown("table", cluster, "exists a")[:2] == (0, expected("""
        key  exists
        ───────────
        "a"  1
        """))


def test_table_falls_back_to_simple_for_a_command_without_a_table_of_its_own():
    cluster = loaded()
    assert shown("table", cluster, "put a 1")[:2] == (0, "OK\n")
    assert shown("table", cluster, "delete a")[:2] == (0, "deleted\n")
    code, out, _ = shown("table", cluster, "status")
    assert code == 0 and "replica" in out.splitlines()[0] and "all reachable replicas hold the same data" in out
    code, out, err = shown("table", cluster, "get missing")
    assert (code, out, err) == (1, "", "key 'missing' not found\n")


def test_json_is_the_same_as_the_json_option():
    cluster = loaded(color="blue")
    code, out, _ = shown("json", cluster, "get color")
    document = json.loads(out)
    assert (code, document["ok"], document["value"]) == (0, True, "blue")
    code, out, _ = shown("json", cluster, "exists nothing")
    assert code == 1 and json.loads(out) | {"latency_ms": 0} == {"ok": True, "command": "exists", "key": "nothing",
                                                                  "exists": False, "latency_ms": 0}
    code, out, _ = shown("json", cluster, "ping")
    assert json.loads(out)["replica"] == "replica1" and json.loads(out)["answer"] == "PONG"


def test_a_script_switches_output_and_raw_as_it_goes():
    cluster = loaded(color="blue sky")
    out, err, out_console, err_console = consoles()

    def outputs(name):
        return make_output(name, out_console, err_console)

    runner = ScriptSession(cluster.connect, outputs("simple"), outputs=outputs)
    lines = "get color\noutput table\nget color\nraw on\nget color\noutput json\nget color\n"
    assert run_script(io.StringIO(lines), runner) == (0, 7)
    runner.close()
    text = out.getvalue().splitlines()
    assert text[0] == "blue sky"
    assert text[3].rstrip() == '"color"  "blue sky"', "a table, quoted"
    assert text[6].rstrip() == "color  blue sky", "a table, raw"
    assert json.loads(text[7]) == {"ok": True, "command": "output", "output": "json", "raw": True}
    assert json.loads(text[8])["value"] == "blue sky"
    assert err.getvalue() == ""


# ------------------------------------------------------------ the console
def test_the_console_switches_output_and_raw_and_knows_the_redis_names():
    cluster = loaded(color="blue sky")
    transcript = session(cluster, ["get color", "raw on", "get color", "keys", "output table", "get color",
                                   "raw off", "output json", "exists color", "output simple", "exists nope",
                                   "set a 1", "del a", "ping", "gett a"], width=80)
    assert trimmed(transcript) == expected("""
        rmi_kv console: type 'help' for the commands, 'quit' or Ctrl-D to leave
        connected to replica1 (1.25 ms)
        rmi_kv replica1> get color
        "blue sky" (1.25 ms)
        rmi_kv replica1> raw on
        raw is on: values and keys as they are, without quotes
        rmi_kv replica1> get color
        blue sky (1.25 ms)
        rmi_kv replica1> keys
        1) color
        1 key (1.25 ms)
        rmi_kv replica1> output table
        output is table, raw
        rmi_kv replica1> get color
        key    value
        ───────────────
        color  blue sky
        (1.25 ms)
        rmi_kv replica1> raw off
        raw is off: values and keys in quotes
        rmi_kv replica1> output json
        output is json
        rmi_kv replica1> exists color
        {"ok": true, "command": "exists", "key": "color", "exists": true, "latency_ms": 1.25}
        rmi_kv replica1> output simple
        output is simple
        rmi_kv replica1> exists nope
        0 (1.25 ms)
        rmi_kv replica1> set a 1
        OK (1.25 ms)
        rmi_kv replica1> del a
        deleted (1.25 ms)
        rmi_kv replica1> ping
        PONG from replica1 (1.25 ms)
        rmi_kv replica1> gett a
        error: unknown command 'gett'
        hint: did you mean 'get'? type 'help' for the list of commands
        """)


def test_the_console_in_json_writes_failures_as_documents():
    transcript = session(loaded(), ["output json", "get missing"], width=80)
    document = json.loads(transcript.splitlines()[-1])
    assert (document["ok"], document["error"], document["exit_code"]) == (False, "KeyNotFound", 1)
