"""Step 7: the coordinator crashes after its decision: the participants wait in doubt, and its recovery
finishes the commit."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Optional

from rmi_kv.cli.render import IN_DOUBT_LISTED, STATUS_COLUMNS, Column, status_table, value_text
from rmi_kv.demo import crashes
from rmi_kv.demo.scenario import COURSE_KEYS
from rmi_kv.errors import OutcomeUnknown

if TYPE_CHECKING:
    from rmi_kv.demo.walkthrough import Demo

TITLE = "The coordinator crashes after its decision"
SHOWN = "coordinator crash: in doubt, then recovery"
EXPLANATION = (
    "The coordinator restarts with a failpoint that kills it right after it forces COMMIT to its log, before "
    "any doCommit leaves. The client gets no answer, so it hears 'outcome unknown': rmi_kv never guesses. "
    "The participants voted YES and may not decide alone: they wait in doubt, holding only that key. When "
    "the coordinator restarts, its recovery finds the COMMIT record and sends doCommit again (the "
    "participants also keep asking for the decision), and the write ends committed everywhere.")

@crashes.crash_step
def run(demo: Demo, names: list[str]) -> None:
    """replica1 dies right after forcing COMMIT; the others hold the key in doubt; its restart commits it."""
    coordinator = names[0]
    key = "demo:coordinator-crash"
    others = names[1:]
    unrelated = COURSE_KEYS[0]
    demo.kv(others[0]).put(key, "old")
    demo.kv(others[0]).put(unrelated, "still readable")
    crashes.arm(demo, coordinator, "coordinator.after_decision=crash")
    error = crashes.put_failing(demo, coordinator, key, "new", OutcomeUnknown)
    demo.require(error is not None, "the client got OutcomeUnknown: no answer came, and rmi_kv never guesses",
                 "expected OutcomeUnknown, the write returned normally")
    crashes.confirm_crash(demo, coordinator, where="right after forcing COMMIT")
    statuses = demo.statuses()
    demo.show_statuses(statuses, title=f"while {coordinator} is down")
    waiting = [s["name"] for s in statuses if s.get("reachable") and s.get("in_doubt")]
    demo.check(sorted(waiting) == sorted(others),
               f"the {len(others)} participants voted YES and now wait in doubt: none may decide alone",
               f"in doubt on {waiting}, expected {others}")
    value = demo.kv(others[1]).get(unrelated)
    demo.check(value == "still readable", f"only that key is held: other keys still read fine "
               f"({unrelated} through {others[1]})", f"reading {unrelated} gave {value!r}")

    def committed_everywhere() -> Optional[list[dict]]:
        statuses = demo.settled(len(names))
        if statuses and set(demo.read_everywhere(key, names).values()) == {"new"}:
            return statuses
        return None

    started = time.monotonic()
    statuses = crashes.restart(demo, coordinator, until=committed_everywhere, what="the write committed everywhere",
                               saying=f"{coordinator} restarts; its recovery finds the COMMIT record and sends "
                                      "doCommit again")
    elapsed = time.monotonic() - started
    seen = demo.read_everywhere(key, names)
    demo.heading(f"{elapsed:.1f} s after the restart")
    columns = (STATUS_COLUMNS["replica"], Column(key, lambda status: value_text(seen[status["name"]])),
               IN_DOUBT_LISTED, STATUS_COLUMNS["digest"])
    demo.show(status_table(statuses, columns=columns, compact=False))
    demo.check(set(seen.values()) == {"new"}, f"recovery finished the commit: all {len(names)} replicas "
               "hold \"new\"", f"reads gave {seen}")
    demo.check(all(not s["in_doubt"] for s in statuses), "nothing is in doubt any more",
               "some replica is still in doubt")
    demo.agree_check(statuses, len(names))
