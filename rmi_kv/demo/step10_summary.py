"""Step 10: the summary: what each step showed, how many of its checks held, and how long it took."""
from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from rmi_kv.cli.render import make_table
from rmi_kv.demo.scenario import CHECK_FAILED, CHECK_OK, SUMMARY

if TYPE_CHECKING:
    from rmi_kv.demo.walkthrough import Demo

TITLE = "Summary"
SHOWN = "this table"
EXPLANATION = "What was shown, and whether every check held."

_STYLES = {"passed": "green", "failed": "bold red", "skipped": "yellow"}
_MARKS = {"passed": CHECK_OK + " passed", "failed": CHECK_FAILED + " failed"}


def run(demo: Demo) -> None:
    """A row per other step: what it showed, checks held of made, its result and seconds."""
    shown = [r for n, r in sorted(demo.results.items()) if n != SUMMARY]
    if not shown:
        demo.say("no other step ran: run the demo without --step to see them all")
        return
    table = make_table(("step", "what was shown", "checks", "result", "s"), right=("step", "s"))
    for result in shown:
        passed = sum(1 for ok, _ in result.checks if ok)
        checks = f"{passed}/{len(result.checks)}" if result.checks else "-"
        table.add_row(str(result.number), result.shown, checks,
                      Text(_MARKS.get(result.status, result.status), style=_STYLES.get(result.status, "dim")),
                      f"{result.seconds:.1f}" if result.status != "not run" else "-")
    demo.show(table)
