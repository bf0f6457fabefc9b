"""Where the console's lines come from: prompt_toolkit on a terminal, input(), or a text stream.

Every reader has ``read_line(prompt, connected=...)``: the console passes
whether it is connected, so the prompt can say so in colour.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, TextIO

from rich.console import Console
from rich.text import Text

from rmi_kv.cli.commands import HELP, OUTPUT_FORMATS

#: the console's history file in the user's home directory (RMI_KV_HISTORY overrides it)
HISTORY_NAME = ".rmi_kv_history"


class StreamReader:
    """Lines from a text stream (tests, piped input). With ``echo``, each
    prompt and line is printed, so the output reads like a terminal session."""

    def __init__(self, stream: TextIO, console: Console, *, echo: bool = True) -> None:
        self.stream, self.console, self.echo = stream, console, echo

    def read_line(self, prompt: str, *, connected: bool = True) -> str:
        line = self.stream.readline()
        if not line:
            raise EOFError
        line = line.rstrip("\r\n")
        if self.echo:
            self.console.print(Text(prompt + line), soft_wrap=True)
        return line


class InputReader:
    """Python's input(): a terminal without prompt_toolkit, or stdout not a terminal."""

    def read_line(self, prompt: str, *, connected: bool = True) -> str:
        return input(prompt)


class PromptReader:
    """prompt_toolkit on a terminal: line editing, history kept across runs,
    completion of commands and replica names."""

    def __init__(self, replica_names: Callable[[], Iterable[str]], *, history: Optional[Path] = None,
                 color: bool = True, **session_options: Any) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory

        path = history or Path(os.environ.get("RMI_KV_HISTORY") or Path.home() / HISTORY_NAME)
        self.color = color
        self.session = PromptSession(history=_file_history(path, FileHistory),
                                     completer=make_completer(replica_names), **session_options)

    def read_line(self, prompt: str, *, connected: bool = True) -> str:
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
    if command in ("trace", "raw") and len(words) == 1:
        return ["on", "off"]
    if command == "output" and len(words) == 1:
        return list(OUTPUT_FORMATS)
    if command == "member" and len(words) == 1:
        return ["list"]
    if command == "txn" and (len(words) == 1 or words[-1].endswith(",")):
        return ["put", "delete"]
    return []
