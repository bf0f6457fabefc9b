"""Script mode: command lines run one after another with one client (``--file``, or piped on stdin)."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from rmi_kv.cli.arguments import EXIT_OK, EXIT_USAGE
from rmi_kv.cli.commands import HELP, Command, UsageError, parse_line
from rmi_kv.cli.execute import execute


class ScriptSession:
    """Runs commands one after another with one client, as a script does;
    ``use`` switches replica, ``trace`` turns tracing on or off and ``output``
    changes how results are written (``outputs(name)`` makes the output)."""

    def __init__(self, connect: Callable[[Optional[str]], Any], output: Any, *, replica: Optional[str] = None,
                 trace: bool = False, outputs: Optional[Callable[[str], Any]] = None) -> None:
        self.connect, self.output, self.trace, self.outputs = connect, output, trace, outputs
        self.kv = connect(replica)

    def run(self, command: Command, *, line: Optional[int] = None) -> int:
        """Run one command; returns its exit code."""
        if command.name in ("use", "trace", "output", "raw", "help"):
            detail = self._session_command(command)  # first: 'output' may change the output that says it
            self.output.session(command, detail)
            return EXIT_OK
        if command.name == "watch":  # until Ctrl-C
            from rmi_kv.cli.watching import run_watch

            return run_watch(self.kv, command, self.output)
        result = execute(self.kv, command, trace=self.trace)
        self.output.show(result, line=line)
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
        if command.name in ("output", "raw"):
            return self._output_command(command)
        topic = command.args[0].lower() if command.args else None
        return {"topic": topic, "commands": {name: entry.usage for name, entry in HELP.items()}}

    def _output_command(self, command: Command) -> dict:
        """``output FORMAT`` and ``raw on|off``: the next results are written another way."""
        if command.name == "raw" and command.args:
            self.output.raw = command.args[0].lower() == "on"
        elif command.args and self.outputs is not None:
            raw, self.output = self.output.raw, self.outputs(command.args[0])
            self.output.raw = raw
        return {"output": self.output.name, "raw": self.output.raw}

    def close(self) -> None:
        """Close the client in use."""
        self.kv.close()


def run_script(lines: Iterable[str], session: ScriptSession, *, keep_going: bool = False) -> tuple[int, int]:
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
            code = session.run(command, line=number)
        seen += 1
        first_failure = first_failure or code
        if code and not keep_going:
            break
    return first_failure, seen
