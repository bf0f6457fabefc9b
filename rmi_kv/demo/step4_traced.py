"""Step 4: one write, message by message: the two-phase commit of one PUT, with times."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Optional

from rich import box
from rich.table import Table
from rich.text import Text

from rmi_kv.cli.render import quoted, trace_heading, trace_phases, trace_result_style, trace_route

if TYPE_CHECKING:
    from rmi_kv.demo.walkthrough import Demo

TITLE = "One write, message by message"
SHOWN = "one write's two-phase commit, with times"
EXPLANATION = (
    "One PUT, traced. The replica the client asked is the coordinator. Phase 1: it sends canCommit to every "
    "replica; each locks the key, forces a PREPARED record to disk and votes. All voted YES, so the "
    "coordinator forces COMMIT to its log: that is the commit point. Phase 2: doCommit to every participant; "
    "each applies the write, forces it, and acknowledges (haveCommitted). Times are milliseconds since the "
    "write began, on the coordinator's clock.")

#: the order the messages are shown in: the protocol's, whatever the clock says
_ORDER = {"canCommit": 0, "vote": 1, "decision": 2, "doAbort": 3, "doCommit": 3, "haveCommitted": 4}


def run(demo: Demo) -> None:
    """Trace one PUT through the second replica; check every message of the protocol is there."""
    names = demo.names()
    coordinator = names[1 % len(names)]
    key, value = "demo:traced", f"traced at {time.strftime('%H:%M:%S')}"
    demo.action(f"PUT {key} = {quoted(value)} through {coordinator}, traced")
    round_ = demo.kv(coordinator).traced({key: value})
    events = round_["trace"]
    decision = next((e for e in events if e["message"] == "decision"), None)
    demo.show(Text(trace_heading(round_), style="dim"))
    for index, (phase, run_) in enumerate(trace_phases(_teaching_order(events, decision))):
        demo.say((phase, "bold cyan"))
        demo.show(_trace_table(run_, coordinator, header=index == 0))
    asked = {e["participant"] for e in events if e["message"] == "canCommit"}
    yes = {e["participant"] for e in events if e["message"] == "vote" and e["result"].startswith("YES")}
    acked = {e["participant"] for e in events if e["message"] == "haveCommitted"}
    others = set(names) - {coordinator}
    demo.check(asked == set(names), f"canCommit went to all {len(names)} replicas (the coordinator's own "
               "participant too)", f"canCommit went to {sorted(asked)} only")
    demo.check(yes == set(names), "every replica voted YES", f"YES votes from {sorted(yes)} only")
    demo.check(decision is not None and decision["result"].startswith("COMMIT"),
               "the coordinator decided COMMIT and forced it to its log", "no COMMIT decision in the trace")
    demo.check(acked == others, "every other replica applied it and acknowledged (haveCommitted)",
               f"acknowledgements from {sorted(acked)}, expected {sorted(others)}")
    seen = demo.read_everywhere(key, names)
    demo.check(set(seen.values()) == {value}, "every replica reads the new value", f"replicas read {seen}")


def _teaching_order(events: list[dict], decision: Optional[dict]) -> list[dict]:
    """The events in the protocol's order, with the doCommit each acknowledgement answers when the trace
    notes only the acknowledgements (doCommit leaves right after the decision is forced)."""
    rows: list[dict] = []
    sent_noted = any(event["message"] == "doCommit" for event in events)
    for event in events:
        if event["message"] == "haveCommitted" and decision is not None and not sent_noted:
            rows.append({"at_ms": decision["at_ms"], "message": "doCommit", "participant": event["participant"],
                         "result": "sent right after the decision"})
        rows.append(event)
    return sorted(rows, key=lambda event: _ORDER.get(event["message"], 5))  # stable: keeps the trace's order


def _trace_table(events: list[dict], coordinator: str, *, header: bool) -> Table:
    """One phase of the round: time, message, from → to, result (headings over the first phase only)."""
    table = Table(box=box.SIMPLE_HEAD if header else box.SIMPLE, show_header=header, show_edge=False,
                  padding=(0, 1, 0, 2))
    table.add_column("ms", justify="right", width=8, no_wrap=True)
    table.add_column("message", width=13, no_wrap=True)
    table.add_column("from → to", width=21, no_wrap=True)
    table.add_column("result")
    for event in events:
        result = event["result"].replace(", applied here in the same write", " (and applied here)")
        table.add_row(f"{event['at_ms']:.2f}", event["message"], trace_route(event, coordinator),
                      Text(result, style=trace_result_style(result)))
    return table
