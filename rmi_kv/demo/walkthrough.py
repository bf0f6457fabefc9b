"""The walkthrough itself: the steps in order, each a titled panel saying what happens and why, then the
evidence, then the checks it makes.

``Demo`` holds what the steps share (clients for every replica, the checks,
the tables they print) and runs them; each step lives in its own module
(``rmi_kv.demo.step1_cluster`` ... ``step10_summary``) as ``run(demo)``, and is
also the method ``Demo.stepN``, so one can be replaced on its own.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Optional, Sequence

from rich.console import Console, RenderableType
from rich.panel import Panel
from rich.text import Text

from rmi_kv.cli.failures import traceback_text, unexpected
from rmi_kv.cli.health import epoch_view
from rmi_kv.cli.render import (FAILOVER_COLUMNS, IN_DOUBT_LISTED, STATUS_COLUMNS, emit, epoch_line, heard_column,
                               status_table)
from rmi_kv.demo import (step1_cluster, step2_populate, step3_everywhere, step4_traced, step5_conflict,
                         step6_participant_crash, step7_coordinator_crash, step8_failover, step9_takeover,
                         step10_summary)
from rmi_kv.demo.scenario import CHECK_FAILED, CHECK_OK, COURSE_KEYS, SUMMARY, StepFailed, StepResult

#: the step modules, by number
STEP_MODULES = {1: step1_cluster, 2: step2_populate, 3: step3_everywhere, 4: step4_traced, 5: step5_conflict,
                6: step6_participant_crash, 7: step7_coordinator_crash, 8: step8_failover, 9: step9_takeover,
                10: step10_summary}
#: number -> (title, what it shows, for the summary)
STEPS: dict[int, tuple[str, str]] = {number: (module.TITLE, module.SHOWN) for number, module in STEP_MODULES.items()}
#: number -> what the step's panel explains
EXPLANATIONS: dict[int, str] = {number: module.EXPLANATION for number, module in STEP_MODULES.items()}

#: the status table of the demo: the console's columns that teach, with the in-doubt transactions named
TEACHING_COLUMNS = (*(STATUS_COLUMNS[heading] for heading in ("replica", "reachable", "keys", "digest")),
                    IN_DOUBT_LISTED)


class Demo:
    """Runs the steps against a cluster reached through ``connect(replica)``."""

    def __init__(self, console: Console, connect: Callable[[Optional[str]], Any], *, cluster: Any = None,
                 allow_crash: bool = False, pause: bool = False, debug: bool = False) -> None:
        self.console = console
        self.connect = connect
        self.cluster = cluster  # a LocalCluster when the demo started it, else None
        self.allow_crash = allow_crash
        self.pause = pause
        self.debug = debug
        self.results: dict[int, StepResult] = {}
        self.current: Optional[StepResult] = None
        self._clients: dict[Optional[str], Any] = {}
        self._populated = False

    # ------------------------------------------------------------ clients
    def kv(self, replica: Optional[str] = None) -> Any:
        """The client of ``replica`` (None: any), made once and kept."""
        client = self._clients.get(replica)
        if client is None:
            client = self._clients[replica] = self.connect(replica)
        return client

    def close(self) -> None:
        """Close every client the steps used."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def names(self) -> list[str]:
        """The registered replicas, asked of the name server again."""
        return sorted(self.kv().replicas(refresh=True))

    def statuses(self) -> list[dict]:
        """Every member's status."""
        return self.kv().status()

    def read_everywhere(self, key: str, names: Optional[list[str]] = None) -> dict[str, Optional[str]]:
        """``key`` read through every replica (or those in ``names``): name -> value."""
        return {name: self.kv(name).get(key) for name in (names or self.names())}

    def settled(self, expected: int) -> Optional[list[dict]]:
        """Every replica reachable, serving, nothing in doubt or unacknowledged, equal data."""
        statuses = self.statuses()
        ok = (len(statuses) == expected
              and all(s["reachable"] and s["serving"] and not s["catching_up"] and not s["in_doubt"]
                      and not s["unacknowledged_commits"] for s in statuses)
              and len({s["digest"] for s in statuses}) == 1)
        return statuses if ok else None

    def populate(self) -> str:
        """The course keys' initial values, in one transaction through the first replica."""
        first = self.names()[0]
        self.kv(first).transaction({key: f"initial {index}" for index, key in enumerate(COURSE_KEYS)})
        self._populated = True
        return first

    @property
    def populated(self) -> bool:
        """Whether the course keys were written in this run (step 3 writes them when step 2 did not run)."""
        return self._populated

    # ------------------------------------------------------------- output
    def show(self, renderable: RenderableType) -> None:
        """Print a table or text, as the console does."""
        emit(self.console, renderable, wrap=True)

    def say(self, *parts: Any, style: str = "") -> None:
        """One line of text, from (text, style) parts."""
        self.show(Text.assemble(*parts, style=style))

    def heading(self, text: str) -> None:
        """A bold line above what follows."""
        self.say((text, "bold"))

    def action(self, text: str) -> None:
        """'▸ what the demo does now'."""
        self.say(("▸ ", "bold cyan"), text)

    def show_statuses(self, statuses: list[dict], *, title: str) -> None:
        """The demo's status table under ``title``: who is down, and which transactions wait in doubt;
        then the epoch (with failover off: that every write needs every member)."""
        self.heading(title)
        self.show(status_table(statuses, columns=TEACHING_COLUMNS, down="no (down)", compact=False))
        line = epoch_line(epoch_view(statuses))
        if line is not None:
            self.show(line)

    def show_epochs(self, statuses: list[dict], *, title: str) -> None:
        """The epoch under ``title``, then each replica's role, epoch, read lease, when the others last
        heard from it, and its digest."""
        self.heading(title)
        line = epoch_line(epoch_view(statuses))
        if line is not None:
            self.show(line)
        columns = (*FAILOVER_COLUMNS.values(), heard_column(statuses), STATUS_COLUMNS["digest"])
        self.show(status_table(statuses, columns=columns, down="unreachable", compact=False))

    # ------------------------------------------------------------- checks
    def check(self, ok: bool, good: str, bad: Optional[str] = None) -> bool:
        """Print one check; a failed one fails the step (the demo goes on)."""
        text = good if ok else (bad or good)
        assert self.current is not None
        self.current.checks.append((bool(ok), text))
        if ok:
            self.say((f"{CHECK_OK} ", "bold green"), (text, "green"))
        else:
            self.say((f"{CHECK_FAILED} ", "bold red"), (text, "red"))
        return bool(ok)

    def require(self, ok: bool, good: str, bad: Optional[str] = None) -> None:
        """A check the rest of the step depends on: it stops the step when it fails."""
        if not self.check(ok, good, bad):
            raise StepFailed(bad or good)

    def agree_check(self, statuses: list[dict], expected: int) -> None:
        """All ``expected`` replicas reachable and holding the same data (equal digests)."""
        reachable = [s for s in statuses if s.get("reachable")]
        self.check(len(reachable) == expected and len({s["digest"] for s in reachable}) == 1,
                   f"no replica diverged: all {expected} hold the same data (equal digests)",
                   f"replicas differ: digests {sorted({s['digest'][:12] for s in reachable})} "
                   f"over {len(reachable)} reachable of {expected}")

    # ------------------------------------------------------------- runner
    def run(self, selected: Sequence[int]) -> list[StepResult]:
        """Run the ``selected`` steps in order; after a failed one only the summary still runs."""
        for number in sorted(STEPS):
            title, shown = STEPS[number]
            self.results[number] = StepResult(number, title, shown)
        stopped = False
        for position, number in enumerate(selected):
            result = self.results[number]
            if stopped and number != SUMMARY:
                continue
            if self.pause and position:
                self._wait_for_enter(number)
            self.current = result
            self.console.print()
            self.show(Panel(Text(EXPLANATIONS[number]), title=f"Step {number} — {result.title}",
                            title_align="left", border_style="cyan", expand=True))
            started = time.monotonic()
            result.status = "running"
            try:
                getattr(self, f"step{number}")()
            except StepFailed:
                stopped = True
            except TimeoutError as error:
                self.check(False, "", str(error))
                stopped = True
            except Exception as error:  # an rmi_kv error nobody expected here, or a bug: the step failed
                if self.debug:
                    self.show(Text(traceback_text(error), style="dim"))
                self.check(False, "", unexpected(error))
                stopped = True
            finally:
                result.seconds = time.monotonic() - started
            if result.status == "running":
                result.status = "failed" if result.failures else "passed"
            if stopped and number != SUMMARY:
                self.say(("the demo stops here: ", "bold red"), "the next steps depend on this one")
        return [self.results[n] for n in selected]

    def _wait_for_enter(self, number: int) -> None:
        try:
            self.console.input(f"[dim]press Enter for step {number}…[/]")
        except EOFError:
            self.pause = False


# each step is also a method, so that one can be replaced on its own (a test breaks one on purpose)
for _number, _module in STEP_MODULES.items():
    setattr(Demo, f"step{_number}", _module.run)
