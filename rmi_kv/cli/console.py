"""The interactive console of ``run_client.py``, rendered with rich.

    rmi_kv replica1> put color "blue sky"
    OK (2.31 ms)
    rmi_kv replica1> trace on

``ReplicaConsole`` takes a client factory, a ``rich.console.Console`` and an
input source, so tests drive it with a string buffer and a list of lines and
compare the transcript. On a terminal the input is prompt_toolkit (line
editing, history in ~/.rmi_kv_history, completion of commands and replica
names); elsewhere it is plain line input (``rmi_kv.cli.reading``). What it
shows is built by ``rmi_kv.cli.render``, as in the one-shot commands and the
demo.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Any, Callable, Optional, TextIO

from rich.console import Console, RenderableType
from rich.text import Text

from rmi_kv.cli.commands import CLUSTER_COMMANDS, DATA_COMMANDS, WRITE_COMMANDS, Command, UsageError, parse_line
from rmi_kv.cli.documents import error_document, result_document
from rmi_kv.cli.execute import Result, execute
from rmi_kv.cli.failures import traceback_text
from rmi_kv.cli.reading import InputReader, PromptReader, StreamReader
from rmi_kv.cli.render import emit, error_lines, help_renderable, latency_text, result_renderables, trace_renderable
from rmi_kv.cli.snapshots import is_local
from rmi_kv.cli.tables import result_table
from rmi_kv.errors import KeyNotFound, NameServerUnavailable, OutcomeUnknown, ReplicaUnavailable, RmiKvError

ClientFactory = Callable[[Optional[str]], Any]


class ReplicaConsole:
    """The interactive console: reads command lines, runs them against one
    replica, shows results with their latency and errors with what to do."""

    def __init__(self, connect: ClientFactory, console: Console, input: Any, *, replica: Optional[str] = None,
                 clock: Callable[[], float] = time.perf_counter, debug: bool = False, write_out: str = "simple",
                 raw: bool = False) -> None:
        """``connect(name)`` makes a KeyValueClient for replica ``name`` (None: any);
        ``input`` is a text stream or has ``read_line(prompt, connected)``; ``write_out``
        (simple, table, json) and ``raw`` are how results are shown until 'output' or 'raw' changes them."""
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
        self.write_out, self.raw = write_out, raw
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
                    line = self.reader.read_line(self.prompt, connected=self.connected)
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
    def _connect(self, *, announce: bool = False) -> bool:
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
            if command.name not in CLUSTER_COMMANDS and not is_local(command) and not self.connected \
                    and not self._connect():
                return
            kv = self.kv if self.kv is not None else self.connect(None)  # status and health need no replica in use
            try:
                result = execute(kv, command, trace=self.trace, clock=self.clock)
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
            for renderable in self._shown(result):
                self._say(renderable)
            if result.command.name in CLUSTER_COMMANDS:
                self._learn(result.payload.get("replicas") or result.payload["members"])
            elif not is_local(result.command):
                self.connected = True
            return
        if isinstance(error, (ReplicaUnavailable, NameServerUnavailable, OutcomeUnknown)):
            if getattr(error, "replica", None) in (None, self.replica):
                self.connected = False
        if self.write_out == "json":
            self._say(Text(json.dumps(error_document(error, command=result.command), ensure_ascii=False)))
        else:
            self._show_error(error, latency_ms=result.latency_ms)

    def _shown(self, result: Result) -> list[RenderableType]:
        """A result as 'output' says: the console's lines, a table (where the command has one), or JSON."""
        if self.write_out == "json":
            return [Text(json.dumps(result_document(result), ensure_ascii=False))]
        table = result_table(result, raw=self.raw) if self.write_out == "table" else None
        if table is None:
            return result_renderables(result, raw=self.raw)
        shown: list[RenderableType] = [table, latency_text(result.latency_ms, lead="")]
        if result.trace is not None:
            shown.append(trace_renderable(result.trace))
        return shown

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
                self._show_error(error, latency_ms=(self.clock() - started) * 1000)
            if self.replica is not None:
                self._say(Text(f"still using {self.replica}", "dim"))
            return
        self.close()
        self.replica, self.kv, self.connected, self.pinned = name, kv, True, True
        self.known_replicas.add(name)
        self._say(Text.assemble(f"now using {name}", latency_text((self.clock() - started) * 1000)))

    def _do_watch(self, command: Command) -> None:
        """Changes as they happen, until Ctrl-C; then back to the prompt."""
        from rmi_kv.cli.watching import console_watch

        if not self.connected and not self._connect():
            return
        kv = self.kv if self.pinned else self.connect(None)  # unpinned, it may move to any replica
        try:
            error = console_watch(kv, command, self.console)
        finally:
            if kv is not self.kv:
                kv.close()
        if error is not None:
            self._show_error(error)
        if kv is self.kv:
            self._recheck()  # Ctrl-C may have cut a call short: its connection goes

    def _do_trace(self, command: Command) -> None:
        if command.args:
            self.trace = command.args[0].lower() == "on"
        if self.trace:
            self._say(Text("trace is on: every write shows its two-phase commit round"))
        else:
            self._say(Text("trace is off"))

    def _do_output(self, command: Command) -> None:
        if command.args:
            self.write_out = command.args[0]
        self._say(Text(f"output is {self.write_out}" + (", raw" if self.raw else "")))

    def _do_raw(self, command: Command) -> None:
        if command.args:
            self.raw = command.args[0].lower() == "on"
        self._say(Text("raw is on: values and keys as they are, without quotes" if self.raw else
                       "raw is off: values and keys in quotes"))

    def _do_help(self, command: Command) -> None:
        topic = command.args[0].lower() if command.args else None
        self._say(help_renderable({"exit": "quit"}.get(topic, topic) if topic else None))

    # ------------------------------------------------------------ output
    def _say(self, renderable: RenderableType) -> None:
        emit(self.console, renderable)

    def _show_error(self, error: BaseException, *, latency_ms: Optional[float] = None) -> None:
        for line in error_lines(error, latency_ms=latency_ms):
            self._say(line)
        if self.debug and not isinstance(error, (UsageError, KeyNotFound)):
            self._say(Text(traceback_text(error), "dim"))


def open_console(connect: ClientFactory, console: Console, *, replica: Optional[str] = None, debug: bool = False,
                 color: bool = True, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout, write_out: str = "simple",
                 raw: bool = False) -> ReplicaConsole:
    """A console reading from ``stdin``: prompt_toolkit when both ends are
    terminals, input() when only stdin is, and echoed plain lines otherwise."""
    repl = ReplicaConsole(connect, console, InputReader(), replica=replica, debug=debug, write_out=write_out, raw=raw)
    if not stdin.isatty():
        repl.reader = StreamReader(stdin, console, echo=True)
    elif stdout.isatty():
        try:
            repl.reader = PromptReader(lambda: repl.known_replicas, color=color)
        except ImportError:  # prompt_toolkit missing: keep input()
            pass
    return repl
