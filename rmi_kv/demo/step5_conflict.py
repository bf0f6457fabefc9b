"""Step 5: concurrent conflicting writes: one key written through five replicas at the same moment."""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from rich.text import Text

from rmi_kv.cli.render import make_table, quoted, value_text
from rmi_kv.errors import OutcomeUnknown, TransactionAborted

if TYPE_CHECKING:
    from rmi_kv.demo.walkthrough import Demo

TITLE = "Concurrent conflicting writes"
SHOWN = "one key written via 5 replicas at once"
EXPLANATION = (
    "Several clients write the same key at the same moment, each through a different replica, so several "
    "coordinators compete. A participant locks a key for one transaction at a time: a canCommit that meets "
    "the lock gets a NO vote, that round aborts, and its coordinator retries after a short random wait (the "
    "older write waits, the younger retries: no deadlock). Each write commits or aborts as a whole, and the "
    "key ends with one value on every replica.")

KEY = "demo:contested"


def run(demo: Demo) -> None:
    """Five writers race on one key; every one gets a definite answer and the replicas end equal."""
    names = demo.names()
    writers = [names[i % len(names)] for i in range(max(5, len(names)))][:5]
    demo.kv(names[0]).put(KEY, "before the race")
    demo.action(f"{len(writers)} clients write {KEY} at the same moment, through " + ", ".join(writers))
    outcomes = _race(demo, writers)
    table = make_table(("through", "value written", "outcome", "attempts", "ms"), right=("attempts", "ms"))
    for index, name in enumerate(writers):
        outcome, value, attempts, detail, _, elapsed = outcomes.get(index, ("no answer", "", 0, "", 0, 0))
        style = {"committed": "green", "aborted": "yellow"}.get(outcome, "bold red")
        shown = outcome if outcome == "committed" else f"{outcome}: {detail}"
        table.add_row(name, quoted(value), Text(shown, style=style), str(attempts), f"{elapsed:.1f}")
    demo.show(table)
    retried = sum(1 for o in outcomes.values() if o[2] > 1)
    demo.say((f"{retried} of {len(writers)} writes met a locked key and retried (attempts above 1); "
              "none waited for ever", "dim"))
    committed = {o[1] for o in outcomes.values() if o[0] == "committed"}
    definite = [o for o in outcomes.values() if o[0] in ("committed", "aborted")]
    demo.check(len(definite) == len(writers), "every writer got a definite answer (committed or aborted, "
               "nothing half-done)", "some writers got no definite answer")
    demo.check(bool(committed), f"{len(committed)} of {len(writers)} writes committed", "no write committed")
    seen = demo.read_everywhere(KEY, names)
    demo.heading(f"{KEY} on every replica afterwards")
    final = make_table(("replica", "value"))
    for name in names:
        final.add_row(name, value_text(seen[name]))
    demo.show(final)
    values = set(seen.values())
    winner = quoted(next(iter(values))) if len(values) == 1 else ""
    demo.check(len(values) == 1, f"every replica holds the same value, the last write to commit ({winner})",
               f"replicas hold different values: {seen}")
    demo.check(values <= committed, "that value is one a committed write wrote (an aborted one left no trace)",
               f"the value {values} is not one a committed writer wrote")
    statuses = demo.statuses()
    demo.check(not any(s.get("in_doubt") for s in statuses), "nothing is left in doubt on any replica",
               "some replica still has transactions in doubt")
    demo.agree_check(statuses, len(names))


def _race(demo: Demo, writers: list[str]) -> dict[int, tuple]:
    """One thread and client per writer, released together: writer index -> (outcome, value, attempts,
    detail, started, ms)."""
    barrier = threading.Barrier(len(writers))
    outcomes: dict[int, tuple] = {}
    clients = [demo.connect(name) for name in writers]

    def write(index: int) -> None:
        value = f"written via {writers[index]}"
        try:
            barrier.wait(10)
            started = time.perf_counter()
            try:
                round_ = clients[index].traced({KEY: value})
                outcomes[index] = ("committed", value, round_["attempts"], "", started)
            except TransactionAborted as error:
                outcomes[index] = ("aborted", value, getattr(error, "attempts", 1), str(error), started)
            except OutcomeUnknown as error:
                outcomes[index] = ("unknown", value, 1, str(error), started)
            outcomes[index] += ((time.perf_counter() - started) * 1000.0,)
        except Exception as error:  # reported as a failed check
            outcomes[index] = ("error", value, 0, f"{type(error).__name__}: {error}", 0.0, 0.0)

    threads = [threading.Thread(target=write, args=(i,), daemon=True, name=f"demo-writer-{i}")
               for i in range(len(writers))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        for client in clients:
            client.close()
    return outcomes
