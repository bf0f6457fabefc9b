"""How results look on a terminal: one set of renderers for the console, one-shot, script mode and the demo.

Values, latencies, error lines with their hints, the status, health and
member tables, and a two-phase commit trace are built here from the same
pieces everywhere, so the demo's teaching tables and the console's compact
ones differ only where they mean to (which columns, how much room), never in
what a cell says.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Collection, Iterable, Optional, Sequence, Union

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from rmi_kv.cli.commands import HELP, UsageError, next_page
from rmi_kv.cli.execute import Result
from rmi_kv.cli.failures import describe
from rmi_kv.cli.health import NO_ADDRESS, UNREACHABLE, problem_sentence, summary
from rmi_kv.errors import KeyNotFound, RmiKvError
from rmi_kv.core import txid as txids

Cell = Union[str, Text]

#: messages the coordinator sends (the others travel from a participant to it)
_OUTBOUND = frozenset({"canCommit", "doCommit", "doAbort"})
#: the console's tables: no edge, no padding before the first column
_COMPACT = {"show_edge": False, "pad_edge": False, "padding": (0, 1, 0, 0)}


# ------------------------------------------------------------------ pieces
def emit(console: Console, renderable: RenderableType) -> None:
    """Print one renderable; text is never hard-wrapped (the terminal wraps it)."""
    console.print(renderable, soft_wrap=isinstance(renderable, Text))


def quoted(value: Optional[str]) -> str:
    """A value as people read it in the console and the demo: in JSON quotes, any script kept (None: null)."""
    return json.dumps(value, ensure_ascii=False)


def value_text(value: Optional[str]) -> Text:
    """A value read from a replica, or a dim '—' when the key has none."""
    return Text("—", style="dim") if value is None else Text(quoted(value))


def latency_text(latency_ms: float, *, lead: str = " ") -> Text:
    """' (1.23 ms)': every result shows how long it took."""
    return Text(f"{lead}({latency_ms:.2f} ms)", style="dim")


def hint_line(hint: str) -> Text:
    """'hint: what to do'."""
    return Text.assemble(("hint: ", "bold cyan"), hint)


def error_lines(error: BaseException, *, latency_ms: Optional[float] = None, lead: str = "error: ") -> list[Text]:
    """'error: what happened' (or another ``lead``) and, when known, 'hint: what to do'."""
    reason, hint = describe(error)
    if isinstance(error, UsageError) or not isinstance(error, RmiKvError):
        first = Text.assemble((lead, "bold red"), reason)
    elif isinstance(error, KeyNotFound):
        first = Text(reason, style="yellow")
    else:
        first = Text.assemble((lead, "bold red"), (reason, "red"))
    if latency_ms is not None:
        first.append_text(latency_text(latency_ms))
    return [first, hint_line(hint)] if hint else [first]


def make_table(headings: Iterable[str], *, right: Collection[str] = (), compact: bool = False,
               no_wrap: bool = False) -> Table:
    """A table with a rule under its headings; ``right`` ones right-justified. ``compact`` (the
    console's) has no edge and no padding before the first column."""
    table = Table(box=box.SIMPLE_HEAD, **(_COMPACT if compact else {}))
    for heading in headings:
        table.add_column(heading, justify="right" if heading in right else "left", no_wrap=no_wrap)
    return table


# ------------------------------------------------------------ the status table
@dataclass(frozen=True)
class Column:
    """One column of a table with a row per replica: its heading, and the cell a status gives."""

    heading: str
    cell: Callable[[dict], Cell]
    right: bool = False


def _reachable(status: dict) -> Text:
    return Text("yes", style="green") if status.get("serving", True) else Text("refusing", style="yellow")


def _in_doubt_count(status: dict) -> Text:
    count = len(status.get("in_doubt", ()))
    return Text(str(count), style="bold yellow" if count else "")


def _in_doubt_listed(status: dict) -> Text:
    doubt = status.get("in_doubt") or []
    return Text(", ".join(doubt), style="bold yellow") if doubt else Text("none", style="dim")


_MATCHES = {True: ("yes", "green"), False: ("NO", "bold red"), None: ("-", "")}

#: the columns of ``status``, by heading, in the console's order
STATUS_COLUMNS: dict[str, Column] = {column.heading: column for column in (
    Column("replica", lambda status: Text(status["name"])),
    Column("reachable", _reachable),
    Column("keys", lambda status: str(status["keys"]), right=True),
    Column("digest", lambda status: status["digest"][:12]),
    Column("matches", lambda status: Text(*_MATCHES[status.get("digest_matches")])),
    Column("in doubt", _in_doubt_count, right=True),
    Column("committed", lambda status: str(status["committed"]), right=True),
    Column("aborted", lambda status: str(status["aborted"]), right=True),
)}
#: 'in doubt' naming the transactions rather than counting them (the demo shows which one waits)
IN_DOUBT_LISTED = Column("in doubt", _in_doubt_listed)


def status_table(statuses: Iterable[dict], *, columns: Sequence[Column] = tuple(STATUS_COLUMNS.values()),
                 down: str = "no", compact: bool = True) -> Table:
    """A row per replica; an unreachable one shows ``down`` in its second column and '-' after it."""
    table = make_table([column.heading for column in columns], right={c.heading for c in columns if c.right},
                       compact=compact, no_wrap=compact)
    for status in statuses:
        if status.get("reachable"):
            table.add_row(*[column.cell(status) for column in columns])
        else:
            table.add_row(Text(status["name"]), Text(down, style="bold red"), *["-"] * (len(columns) - 2))
    return table


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
    reachable = [s for s in statuses if s.get("reachable")]
    same = [Text("all reachable replicas hold the same data", "green")] \
        if reachable and len({s["digest"] for s in reachable}) == 1 else []
    return [status_table(statuses), *same, *verdict_lines(statuses, payload)]


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
    table = make_table(("member", "reachable", "role", "uri"), compact=True, no_wrap=True)
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


# ------------------------------------------------------------------- traces
def phase_of(message: str) -> str:
    """The phase of the two-phase commit round a trace message belongs to."""
    if message in ("canCommit", "vote"):
        return "phase 1: canCommit, then every participant votes"
    if message == "decision":
        return "decision (at the coordinator)"
    if message == "doAbort":
        return "phase 2: doAbort to every participant that may have prepared"
    return "phase 2: doCommit to every participant, each acknowledges (haveCommitted)"


def trace_phases(events: Iterable[dict]) -> list[tuple[str, list[dict]]]:
    """The events in runs of one phase each, in their order: (phase, events)."""
    runs: list[tuple[str, list[dict]]] = []
    for event in events:
        phase = phase_of(event["message"])
        if not runs or runs[-1][0] != phase:
            runs.append((phase, []))
        runs[-1][1].append(event)
    return runs


def coordinator_of(trace: dict) -> str:
    """The coordinator of a traced round: the first part of its txid."""
    return txids.coordinator_of(str(trace.get("txid", "?")))


def trace_heading(trace: dict) -> str:
    """'two-phase commit TXID (coordinator C, N attempts)'."""
    attempts = trace.get("attempts", 1)
    return (f"two-phase commit {trace.get('txid')} (coordinator {coordinator_of(trace)}, "
            f"{attempts} attempt{'s' if attempts != 1 else ''})")


def trace_route(event: dict, coordinator: str, width: int = 0) -> str:
    """Who sent a message to whom ('c → p'), each name padded to ``width``; a decision is the coordinator's."""
    message, participant = event["message"], str(event["participant"])
    if message == "decision":
        return participant.ljust(2 * width + 3) if width else participant
    if message in _OUTBOUND:
        return f"{coordinator.ljust(width)} → {participant.ljust(width)}"
    return f"{participant.ljust(width)} → {coordinator.ljust(width)}"


def trace_result_style(result: str) -> str:
    """Green for a vote, decision or acknowledgement that lets the write commit; red for one that does not."""
    if result.startswith(("YES", "COMMIT", "acknowledged", "done")):
        return "green"
    return "red" if result.startswith(("NO", "ABORT", "failed", "timeout", "no answer")) else ""


def trace_renderable(trace: dict) -> Text:
    """A two-phase commit round, one message a line, top to bottom."""
    events = trace.get("trace", [])
    coordinator = coordinator_of(trace)
    width = max([len(coordinator)] + [len(str(e["participant"])) for e in events])
    text = Text(trace_heading(trace) + "\n", style="bold")
    for phase, run in trace_phases(events):
        text.append(f"  {phase}\n", style="bold cyan")
        for event in run:
            result = str(event["result"])
            text.append_text(Text.assemble(f"  {event['at_ms']:9.2f} ms  {event['message']:<13}  "
                                           f"{trace_route(event, coordinator, width)}  ",
                                           (result, trace_result_style(result)), "\n"))
    text.rstrip()
    return text


# ------------------------------------------------------------------ results
def result_renderables(result: Result) -> list[RenderableType]:
    """What the console shows for a successful data command."""
    payload, latency = result.payload, latency_text(result.latency_ms)
    name = result.command.name
    if name == "put":
        shown: list[RenderableType] = [Text.assemble(("OK", "bold green"), latency)]
    elif name == "get":
        shown = [Text.assemble(quoted(payload["value"]), latency)]
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
    lines: list[RenderableType] = [Text(f"{index}) {quoted(key)}") for index, key in enumerate(keys, 1)]
    count = Text(f"{len(keys)} key{'s' if len(keys) != 1 else ''}" if keys else "(no keys)")
    lines.append(count + latency)
    if payload["more"]:
        lines.append(Text.assemble(f"more after {quoted(payload['next_after'])}: ", (next_page(payload), "cyan")))
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
