"""The interactive console of ``run_client.py``, rendered with rich.

    rmi_kv replica1> put color "blue sky"
    OK (2.31 ms)
    rmi_kv replica1> trace on

``ReplicaConsole`` takes a client factory, a ``rich.console.Console`` and an
input source, so tests drive it with a string buffer and a list of lines and
compare the transcript. On a terminal the input is prompt_toolkit (line
editing, history in ~/.rmi_kv_history, completion of commands and replica
names); elsewhere it is plain line input.

The renderers here (results, errors, the status table, a 2PC trace) are also
used by the one-shot commands.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, TextIO, Union

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from rmi_kv.cli.commands import (CLUSTER_COMMANDS, DATA_COMMANDS, HELP, WRITE_COMMANDS, Command, Result, UsageError,
                       describe, execute, next_page, parse_line)
from rmi_kv.errors import KeyNotFound, NameServerUnavailable, OutcomeUnknown, ReplicaUnavailable, RmiKvError
from rmi_kv.cli.health import NO_ADDRESS, UNREACHABLE, problem_sentence, summary

#: the console's history file in the user's home directory (RMI_KV_HISTORY overrides it)
HISTORY_NAME = ".rmi_kv_history"

ClientFactory = Callable[[Optional[str]], Any]

#: messages the coordinator sends (the others travel from a participant to it)
_OUTBOUND = frozenset({"canCommit", "doCommit", "doAbort"})


# ---------------------------------------------------------------- rendering
def latency_text(latency_ms: float, lead: str = " ") -> Text:
    """' (1.23 ms)': every result shows how long it took."""
    return Text(f"{lead}({latency_ms:.2f} ms)", style="dim")


def error_lines(error: BaseException, latency_ms: Optional[float] = None) -> list[Text]:
    """'error: what happened' and, when known, 'hint: what to do'."""
    reason, hint = describe(error)
    if isinstance(error, UsageError) or not isinstance(error, RmiKvError):
        first = Text.assemble(("error: ", "bold red"), reason)
    elif isinstance(error, KeyNotFound):
        first = Text(reason, style="yellow")
    else:
        first = Text.assemble(("error: ", "bold red"), (reason, "red"))
    if latency_ms is not None:
        first.append_text(latency_text(latency_ms))
    lines = [first]
    if hint:
        lines.append(Text.assemble(("hint: ", "bold cyan"), hint))
    return lines


def report_renderables(name: str, payload: dict) -> list[RenderableType]:
    """What ``status``, ``health`` and ``member list`` show, in the console and one-shot alike."""
    if name == "status":
        return status_renderables(payload)
    if name == "health":
        return health_renderables(payload)
    return member_renderables(payload["members"])


def status_renderables(payload: dict) -> list[RenderableType]:
    """The status table (statuses annotated by ``annotate_digests``), then what is wrong and the verdict."""
    statuses = payload["replicas"]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for column in ("replica", "reachable", "keys", "digest", "matches", "in doubt", "committed", "aborted"):
        table.add_column(column, justify="right" if column in ("keys", "in doubt", "committed", "aborted") else "left",
                         no_wrap=True)
    for status in statuses:
        table.add_row(*_status_row(status))
    reachable = [s for s in statuses if s.get("reachable")]
    same = [Text("all reachable replicas hold the same data", "green")] \
        if reachable and len({s["digest"] for s in reachable}) == 1 else []
    return [table, *same, *verdict_lines(statuses, payload)]


def _status_row(status: dict) -> list[Union[str, Text]]:
    if not status.get("reachable"):
        return [Text(status["name"]), Text("no", style="bold red"), "-", "-", "-", "-", "-", "-"]
    reachable = Text("yes", style="green") if status.get("serving", True) else Text("refusing", style="yellow")
    matches = {True: Text("yes", style="green"), False: Text("NO", style="bold red"), None: Text("-")}
    in_doubt = len(status.get("in_doubt", ()))
    return [Text(status["name"]), reachable, str(status["keys"]), status["digest"][:12],
            matches[status.get("digest_matches")], Text(str(in_doubt), style="bold yellow" if in_doubt else ""),
            str(status["committed"]), str(status["aborted"])]


def verdict_lines(statuses: list[dict], found: dict) -> list[Text]:
    """One line per problem (which member, why, what to do), then the verdict."""
    lines = [Text(problem_sentence(each), "red" if each["problem"] == UNREACHABLE else "yellow")
             for each in found["problems"]]
    return [*lines, verdict_line(statuses, found)]


def verdict_line(statuses: list[dict], found: dict) -> Text:
    """'healthy: ...' in green or 'unhealthy: ...' in red."""
    return Text(summary(statuses, found), "bold green" if found["healthy"] else "bold red")


def health_renderables(payload: dict) -> list[RenderableType]:
    """Like ``etcdctl endpoint health``: one line per member, then the verdict."""
    lines = []
    for member in payload["members"]:
        where = f"{member['name']} ({member.get('uri') or NO_ADDRESS})"
        if member["healthy"]:
            took = f", took {member['took_ms']:.2f} ms" if "took_ms" in member else ""
            lines.append(Text.assemble(f"{where} is ", ("healthy", "green"), f": serving{took}"))
        else:
            why = "; ".join(f"{p['problem']} ({p['detail']})" for p in member["problems"])
            lines.append(Text.assemble(f"{where} is ", ("unhealthy", "bold red"), f": {why}"))
    return [*lines, verdict_line(payload["members"], payload)]


def member_renderables(members: list[dict]) -> list[RenderableType]:
    """The member table (name, URI, reachable, role), then why each member that is not plainly one is not."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for column in ("member", "reachable", "role", "uri"):
        table.add_column(column, no_wrap=True)
    notes = []
    for member in members:
        name = f"{member['name']} *" if member.get("in_use") else member["name"]
        reachable = Text("yes", "green") if member["reachable"] else Text("no", "bold red")
        role = member["role"]
        table.add_row(name, reachable, Text(role.split(":", 1)[0], "green" if role == "member" else "yellow"),
                      member.get("uri") or Text(NO_ADDRESS, "dim"))
        if not member["reachable"]:
            notes.append(Text(f"{member['name']} is unreachable ({member.get('error')})", "red"))
        elif not member.get("registered", True):
            notes.append(Text(f"{member['name']} is not registered in the name server (reached at its last "
                              "known address); it registers again by itself", "yellow"))
        if ":" in role:
            notes.append(Text(f"{member['name']} is {role}", "yellow"))
    if any(member.get("in_use") for member in members):
        notes.append(Text("* the replica this client uses", "dim"))
    return [table, *notes]


def trace_renderable(trace: dict) -> Text:
    """A two-phase commit round, one message a line, top to bottom."""
    events = trace.get("trace", [])
    coordinator = str(trace.get("txid", "?")).split(":", 1)[0]
    width = max([len(coordinator)] + [len(str(e["participant"])) for e in events])
    attempts = trace.get("attempts", 1)
    text = Text(f"two-phase commit {trace.get('txid')} (coordinator {coordinator}, "
                f"{attempts} attempt{'s' if attempts != 1 else ''})\n", style="bold")
    phase = None
    for event in events:
        current = phase_of(event["message"])
        if current != phase:
            phase = current
            text.append(f"  {current}\n", style="bold cyan")
        text.append_text(_trace_line(event, coordinator, width))
    text.rstrip()
    return text


def phase_of(message: str) -> str:
    """The phase of the two-phase commit round a trace message belongs to."""
    if message in ("canCommit", "vote"):
        return "phase 1: canCommit, then every participant votes"
    if message == "decision":
        return "decision (at the coordinator)"
    if message == "doAbort":
        return "phase 2: doAbort to every participant that may have prepared"
    return "phase 2: doCommit to every participant, each acknowledges (haveCommitted)"


def _trace_line(event: dict, coordinator: str, width: int) -> Text:
    message, participant, result = event["message"], str(event["participant"]), str(event["result"])
    if message == "decision":
        route = participant.ljust(2 * width + 3)
    elif message in _OUTBOUND:
        route = f"{coordinator.ljust(width)} → {participant.ljust(width)}"
    else:
        route = f"{participant.ljust(width)} → {coordinator.ljust(width)}"
    style = ("green" if result.startswith(("YES", "COMMIT", "acknowledged", "done"))
             else "red" if result.startswith(("NO", "ABORT", "failed", "timeout", "no answer")) else "")
    return Text.assemble(f"  {event['at_ms']:9.2f} ms  {message:<13}  {route}  ", (result, style), "\n")


def emit(console: Console, renderable: RenderableType) -> None:
    """Print one renderable; text is never hard-wrapped (the terminal wraps it)."""
    console.print(renderable, soft_wrap=isinstance(renderable, Text))


def result_renderables(result: Result) -> list[RenderableType]:
    """What the console shows for a successful data command."""
    payload, latency = result.payload, latency_text(result.latency_ms)
    name = result.command.name
    if name == "put":
        shown: list[RenderableType] = [Text.assemble(("OK", "bold green"), latency)]
    elif name == "get":
        shown = [Text.assemble(json.dumps(payload["value"], ensure_ascii=False), latency)]
    elif name == "delete":
        shown = [Text.assemble(("deleted", "bold green"), latency)]
    elif name == "txn":
        count = len(payload["writes"])
        shown = [Text.assemble(("OK", "bold green"), f": {count} write{'s' if count != 1 else ''} "
                               "committed atomically", latency)]
    elif name == "keys":
        shown = _keys_lines(payload, latency)
    else:
        shown = [*report_renderables(name, payload), latency_text(result.latency_ms, lead="")]
    if result.trace is not None:
        shown.append(trace_renderable(result.trace))
    return shown


def _keys_lines(payload: dict, latency: Text) -> list[RenderableType]:
    keys = payload["keys"]
    lines: list[RenderableType] = [Text(f"{index}) {json.dumps(key, ensure_ascii=False)}")
                                   for index, key in enumerate(keys, 1)]
    summary = Text(f"{len(keys)} key{'s' if len(keys) != 1 else ''}" if keys else "(no keys)")
    lines.append(summary + latency)
    if payload["more"]:
        lines.append(Text.assemble(f"more after {json.dumps(payload['next_after'], ensure_ascii=False)}: ",
                                   (next_page(payload), "cyan")))
    return lines


def help_renderable(topic: Optional[str] = None) -> Text:
    """The list of commands, or one command's usage and example."""
    if topic is not None:
        entry = HELP[topic]
        return Text.assemble((entry.usage, "bold"), f"\n  {entry.summary}\n  example: ", (entry.example, "cyan"))
    width = max(len(entry.usage) for entry in HELP.values())
    lines = [Text.assemble((entry.usage.ljust(width), "bold"), "  ", entry.summary) for entry in HELP.values()]
    lines.append(Text("values with spaces go in quotes, as in a shell; 'help COMMAND' shows an example", "dim"))
    return Text("\n").join(lines)


# ------------------------------------------------------------------- input
class StreamReader:
    """Lines from a text stream (tests, piped input). With ``echo``, each
    prompt and line is printed, so the output reads like a terminal session."""

    def __init__(self, stream: TextIO, console: Console, echo: bool = True) -> None:
        self.stream, self.console, self.echo = stream, console, echo

    def read_line(self, prompt: str, connected: bool = True) -> str:
        line = self.stream.readline()
        if not line:
            raise EOFError
        line = line.rstrip("\r\n")
        if self.echo:
            self.console.print(Text(prompt + line), soft_wrap=True)
        return line


class InputReader:
    """Python's input(): a terminal without prompt_toolkit, or stdout not a terminal."""

    def read_line(self, prompt: str, connected: bool = True) -> str:
        return input(prompt)


class PromptReader:
    """prompt_toolkit on a terminal: line editing, history kept across runs,
    completion of commands and replica names."""

    def __init__(self, replica_names: Callable[[], Iterable[str]], history: Optional[Path] = None,
                 color: bool = True, **session_options: Any) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory

        path = history or Path(os.environ.get("RMI_KV_HISTORY") or Path.home() / HISTORY_NAME)
        self.color = color
        self.session = PromptSession(history=_file_history(path, FileHistory),
                                     completer=make_completer(replica_names), **session_options)

    def read_line(self, prompt: str, connected: bool = True) -> str:
        if not self.color:
            return self.session.prompt(prompt)
        style = "ansigreen bold" if connected else "ansired bold"
        return self.session.prompt([(style, prompt.rstrip("> ")), ("", "> ")])


def _file_history(path: Path, file_history: Callable) -> Any:
    """History in ``path``; in memory only when the file cannot be written."""
    try:
        path.touch(exist_ok=True)
        return file_history(str(path))
    except OSError:
        from prompt_toolkit.history import InMemoryHistory

        return InMemoryHistory()


def make_completer(replica_names: Callable[[], Iterable[str]]) -> Any:
    """A prompt_toolkit completer: command names first, then each command's arguments."""
    from prompt_toolkit.completion import Completer, Completion

    class ConsoleCompleter(Completer):
        def get_completions(self, document: Any, complete_event: Any) -> Iterable[Any]:
            word = document.get_word_before_cursor(WORD=True)
            for choice in completion_choices(document.text_before_cursor, replica_names):
                if choice.startswith(word):
                    yield Completion(choice, start_position=-len(word))

    return ConsoleCompleter()


def completion_choices(before_cursor: str, replica_names: Callable[[], Iterable[str]]) -> list[str]:
    """What may come at the cursor, given the text before it."""
    words = before_cursor.split()
    if before_cursor and not before_cursor[-1].isspace():
        words = words[:-1]  # the word being typed
    if not words:
        return list(HELP)
    command = words[0].lower()
    if command == "use" and len(words) == 1:
        return sorted(replica_names())
    if command == "help" and len(words) == 1:
        return list(HELP)
    if command == "trace" and len(words) == 1:
        return ["on", "off"]
    if command == "member" and len(words) == 1:
        return ["list"]
    if command == "txn" and (len(words) == 1 or words[-1].endswith(",")):
        return ["put", "delete"]
    return []


# ----------------------------------------------------------------- console
class ReplicaConsole:
    """The interactive console: reads command lines, runs them against one
    replica, shows results with their latency and errors with what to do."""

    def __init__(self, connect: ClientFactory, console: Console, input: Any, replica: Optional[str] = None,
                 clock: Callable[[], float] = time.perf_counter, debug: bool = False) -> None:
        """``connect(name)`` makes a KeyValueClient for replica ``name`` (None: any);
        ``input`` is a text stream or has ``read_line(prompt, connected)``."""
        self.connect = connect
        self.console = console
        self.reader = input if hasattr(input, "read_line") else StreamReader(input, console)
        self.clock = clock
        self.debug = debug
        self.replica = replica
        #: the user chose the replica (--replica or use): never switch away on our own
        self.pinned = replica is not None
        self.kv: Any = None
        self.connected = False
        self.trace = False
        self.known_replicas: set[str] = set()

    # ---------------------------------------------------------- the loop
    @property
    def prompt(self) -> str:
        if self.replica is None:
            return "rmi_kv (not connected)> "
        return f"rmi_kv {self.replica}> " if self.connected else f"rmi_kv {self.replica} (not connected)> "

    def run(self) -> int:
        """Read and run commands until quit or end of input; returns the exit code (0)."""
        self._say(Text("rmi_kv console: type 'help' for the commands, 'quit' or Ctrl-D to leave", "bold"))
        try:
            self._connect(announce=True)
        except KeyboardInterrupt:  # Ctrl-C while the first replica is sought: go to the prompt
            self._say_cancelled()
        try:
            while True:
                try:
                    line = self.reader.read_line(self.prompt, self.connected)
                except KeyboardInterrupt:
                    continue  # Ctrl-C drops the line being typed
                except EOFError:
                    break
                if not self.run_line(line):
                    break
        finally:
            self.close()
        return 0

    def run_line(self, line: str) -> bool:
        """Run one command line; False when it asks to leave."""
        try:
            command = parse_line(line)
        except UsageError as error:
            self._show_error(error)
            return True
        if command is None:
            return True
        if command.name == "quit":
            return False
        if command.name in DATA_COMMANDS:
            self._request(command)
        else:
            getattr(self, f"_do_{command.name}")(command)
        return True

    def close(self) -> None:
        """Close the client's connections."""
        if self.kv is not None:
            self.kv.close()
            self.kv = None

    # ------------------------------------------------------- connections
    def _connect(self, announce: bool = False) -> bool:
        """Reach the replica in use, or (unless pinned) the first reachable one."""
        started = self.clock()
        try:
            name, kv = self._reach()
        except RmiKvError as error:
            self.connected = False
            self._show_error(error)
            return False
        previous = self.replica
        self._adopt(name, kv)
        if announce:
            self._say(Text.assemble(f"connected to {name}", latency_text((self.clock() - started) * 1000)))
        elif previous not in (None, name):
            self._say(Text(f"{previous} is unreachable; now using {name}", "yellow"))
        else:
            self._say(Text(f"reconnected to {name}", "green"))
        return True

    def _reach(self) -> tuple[str, Any]:
        """(name, client) of a replica that answers a ping."""
        if self.pinned:
            return self.replica, self._ping(self.replica)
        names = self._registered()
        if not names:
            raise ReplicaUnavailable("no replica is registered in the name server; "
                                     "start one with 'python run_server.py --name replica1'")
        order = ([self.replica] if self.replica in names else []) + [n for n in names if n != self.replica]
        for name in order:
            try:
                return name, self._ping(name)
            except RmiKvError:
                continue  # try the next one
        raise ReplicaUnavailable(f"none of the registered replicas ({', '.join(names)}) is reachable; "
                                 "start them with 'python run_server.py --name NAME'")

    def _registered(self) -> list[str]:
        lister = self.connect(None)
        try:
            names = sorted(lister.replicas(refresh=True))
        finally:
            lister.close()
        self.known_replicas = set(names)
        return names

    def _ping(self, name: str) -> Any:
        kv = self.connect(name)
        try:
            kv.ping()
        except BaseException:
            kv.close()
            raise
        return kv

    def _adopt(self, name: str, kv: Any) -> None:
        self.close()
        self.replica, self.kv, self.connected = name, kv, True
        self.known_replicas.add(name)

    def _reset_client(self) -> None:
        """After Ctrl-C or an unexpected error: drop the connections (they may be mid-call)."""
        try:
            self.close()
        except Exception:
            self.kv = None
        self.connected = False

    # ---------------------------------------------------------- requests
    def _request(self, command: Command) -> None:
        kv = None
        try:
            if command.name not in CLUSTER_COMMANDS and not self.connected and not self._connect():
                return
            kv = self.kv if self.kv is not None else self.connect(None)  # status and health need no replica in use
            try:
                result = execute(kv, command, self.trace, self.clock)
            finally:
                if kv is not self.kv:
                    kv.close()
        except KeyboardInterrupt:  # Ctrl-C cancels the request, never the console
            self._cancelled(command, kv)
            return
        except Exception as error:  # a bug or a Pyro5 surprise: say so, keep the console
            self._reset_client()
            self._show_error(error)
            return
        self._show_result(result)

    def _show_result(self, result: Result) -> None:
        error = result.error
        if error is None:
            for renderable in result_renderables(result):
                self._say(renderable)
            if result.command.name in CLUSTER_COMMANDS:
                self._learn(result.payload.get("replicas") or result.payload["members"])
            else:
                self.connected = True
            return
        if isinstance(error, (ReplicaUnavailable, NameServerUnavailable, OutcomeUnknown)):
            if getattr(error, "replica", None) in (None, self.replica):
                self.connected = False
        self._show_error(error, result.latency_ms)

    def _learn(self, statuses: list[dict]) -> None:
        """status, health and member list tell whether the replica in use is reachable, and every name."""
        self.known_replicas = {s["name"] for s in statuses}
        mine = [s for s in statuses if s["name"] == self.replica]
        if mine:
            self.connected = bool(mine[0].get("reachable")) and self.kv is not None

    def _cancelled(self, command: Command, kv: Any) -> None:
        """After Ctrl-C in a request made with ``kv`` (None: it was still connecting, nothing was sent)."""
        self._say_cancelled(f": the {command.name} may have been sent, so it may or may not commit; "
                            "read the key to find out" if kv is not None and command.name in WRITE_COMMANDS else "")
        if kv is not None and kv is self.kv:
            self._recheck()

    def _recheck(self) -> None:
        """The interrupted client's connection may be mid-call: it goes. Whether the replica in use
        is still there is a ping away; the prompt then says what is true, not what was feared."""
        self._reset_client()
        try:
            self._adopt(self.replica, self._ping(self.replica))
        except RmiKvError as error:
            self._show_error(error)
        except KeyboardInterrupt:  # not known then: the next command reconnects
            pass

    def _say_cancelled(self, detail: str = "") -> None:
        self._say(Text("cancelled" + detail, style="bold yellow"))

    # -------------------------------------------------- session commands
    def _do_use(self, command: Command) -> None:
        name = command.args[0]
        started = self.clock()
        try:
            kv = self._ping(name)
        except (RmiKvError, KeyboardInterrupt) as error:  # Ctrl-C cancels the wait for a replica that hangs
            if isinstance(error, KeyboardInterrupt):
                self._say_cancelled()
            else:
                self._show_error(error, (self.clock() - started) * 1000)
            if self.replica is not None:
                self._say(Text(f"still using {self.replica}", "dim"))
            return
        self.close()
        self.replica, self.kv, self.connected, self.pinned = name, kv, True, True
        self.known_replicas.add(name)
        self._say(Text.assemble(f"now using {name}", latency_text((self.clock() - started) * 1000)))

    def _do_trace(self, command: Command) -> None:
        if command.args:
            self.trace = command.args[0].lower() == "on"
        if self.trace:
            self._say(Text("trace is on: every write shows its two-phase commit round"))
        else:
            self._say(Text("trace is off"))

    def _do_help(self, command: Command) -> None:
        topic = command.args[0].lower() if command.args else None
        self._say(help_renderable({"exit": "quit"}.get(topic, topic) if topic else None))

    # ------------------------------------------------------------ output
    def _say(self, renderable: RenderableType) -> None:
        emit(self.console, renderable)

    def _show_error(self, error: BaseException, latency_ms: Optional[float] = None) -> None:
        for line in error_lines(error, latency_ms):
            self._say(line)
        if self.debug and not isinstance(error, (UsageError, KeyNotFound)):
            self._say(Text("".join(traceback.format_exception(type(error), error, error.__traceback__)), "dim"))


def open_console(connect: ClientFactory, console: Console, replica: Optional[str] = None, debug: bool = False,
                 color: bool = True, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> ReplicaConsole:
    """A console reading from ``stdin``: prompt_toolkit when both ends are
    terminals, input() when only stdin is, and echoed plain lines otherwise."""
    repl = ReplicaConsole(connect, console, InputReader(), replica=replica, debug=debug)
    if not stdin.isatty():
        repl.reader = StreamReader(stdin, console, echo=True)
    elif stdout.isatty():
        try:
            repl.reader = PromptReader(lambda: repl.known_replicas, color=color)
        except ImportError:  # prompt_toolkit missing: keep input()
            pass
    return repl
