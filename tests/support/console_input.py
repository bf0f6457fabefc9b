"""Console input for transcript tests: command lines, and actions between them."""
from __future__ import annotations

from rich.console import Console


class ScriptedReader:
    """Input that can also act on the cluster between lines, like a user in another
    terminal; ``KeyboardInterrupt`` as a step is a Ctrl-C at the prompt."""

    def __init__(self, console: Console, steps) -> None:
        self.console, self.steps = console, list(steps)

    def read_line(self, prompt: str, connected: bool = True) -> str:
        while self.steps:
            step = self.steps.pop(0)
            if step is KeyboardInterrupt:
                self.console.print(prompt + "^C")
                raise KeyboardInterrupt
            if callable(step):
                step()
                continue
            self.console.print(prompt + step)
            return step
        raise EOFError
