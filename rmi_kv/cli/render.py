"""How results look on a terminal: one set of renderers for the console, one-shot, script mode and the demo.

Values, latencies, error lines with their hints, the status, health and
member tables, the epoch and each replica's role and lease, and a two-phase
commit trace are built here from the same pieces everywhere, so the demo's
teaching tables and the console's compact ones differ only where they mean
to (which columns, how much room), never in what a cell says. The console's
tables fit in 80 columns.
"""
from __future__ import annotations

import io
import json
import textwrap
from dataclasses import dataclass
from typing import Any, Callable, Collection, Iterable, Iterator, Optional, Sequence, Union

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from rmi_kv.cli.commands import HELP, UsageError, next_page
from rmi_kv.cli.execute import Result
from rmi_kv.cli.failures import describe
from rmi_kv.cli.snapshots import snapshot_line
from rmi_kv.cli.health import (NO_ADDRESS, OUTSIDE_EPOCH, UNREACHABLE, epoch_view, failover_of, problem_sentence,
                               summary)
from rmi_kv.errors import KeyNotFound, RmiKvError
from rmi_kv.core import txid as txids

Cell = Union[str, Text]

#: messages the coordinator sends (the others travel from a participant to it)
_OUTBOUND = frozenset({"canCommit", "doCommit", "doAbort"})
#: the console's tables: no edge, no padding before the first column
_COMPACT = {"show_edge": False, "pad_edge": False, "padding": (0, 1, 0, 0)}


# ------------------------------------------------------------------ pieces
def emit(console: Console, renderable: RenderableType, *, wrap: bool = False) -> None:
    """Print one renderable. Text is not hard-wrapped (the terminal wraps it, and a line copied
    from it stays one line), unless ``wrap``: then between words at the console's width, as
    people read it in the console and the demo (a terminal would break a word in two)."""
    console.print(renderable, soft_wrap=isinstance(renderable, Text) and not wrap)


def quoted(value: Optional[str]) -> str:
    """A value as people read it in the console and the demo: in JSON quotes, any script kept (None: null)."""
    return json.dumps(value, ensure_ascii=False)


def shown(value: Optional[str], *, raw: bool = False) -> str:
    """A value or key as the console shows it: quoted, or as it is with ``raw`` (--raw, 'raw on')."""
    return value if raw and value is not None else quoted(value)


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
    # narrow terminals: padding collapses before any cell is cut, and a cell too long for its
    # column goes on to the next line whole (never "…")
    table = Table(box=box.SIMPLE_HEAD, **(_COMPACT if compact else {"collapse_padding": True}))
    for heading in headings:
        table.add_column(heading, justify="right" if heading in right else "left", no_wrap=no_wrap,
                         overflow="fold")
    return table


# ------------------------------------------------------------ the status table
@dataclass(frozen=True)
class Column:
    """One column of a table with a row per replica: its heading, and the cell a status gives
    (``down_too``: an unreachable replica's too, where others show '-')."""

    heading: str
    cell: Callable[[dict], Cell]
    right: bool = False
    down_too: bool = False


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
    """A row per replica; an unreachable one shows ``down`` in its second column and '-' after it
    (but in the columns that say something of it even so)."""
    table = make_table([column.heading for column in columns], right={c.heading for c in columns if c.right},
                       compact=compact, no_wrap=compact)
    for status in statuses:
        if status.get("reachable"):
            table.add_row(*[column.cell(status) for column in columns])
        else:
            table.add_row(Text(status["name"]), Text(down, style="bold red"),
                          *[column.cell(status) if column.down_too else "-" for column in columns[2:]])
    return table


# ------------------------------------------------------- epochs and leases
_ROLE_STYLES = {"member": "green", "removed": "bold red"}


def role_cell(status: dict) -> Text:
    """The role a replica reports: member, catching up, outside the epoch, removed."""
    found = failover_of(status)
    role = str(found.get("role")) if found is not None else ("catching up" if status.get("catching_up") else "member")
    return Text(role, style=_ROLE_STYLES.get(role, "yellow"))


def epoch_cell(status: dict) -> Text:
    """The number of the epoch a replica is in ('-' when it does not say)."""
    found = failover_of(status)
    epoch = found.get("epoch") if found is not None else None
    return Text(str(epoch.get("number", 0))) if isinstance(epoch, dict) else Text("-")


def lease_cell(status: dict) -> Text:
    """'0.84 s left' while its read lease is valid, 'none' without one, 'off' with failover off."""
    found = failover_of(status)
    lease = found.get("lease") if found is not None else None
    if not isinstance(lease, dict) or lease.get("valid") is None:
        return Text("off" if found is not None else "-", style="dim")
    if lease["valid"]:
        return Text(f"{float(lease.get('remaining') or 0):.2f} s left", style="green")
    return Text("none", style="yellow")


def lease_phrase(found: dict) -> str:
    """'lease 0.84 s left' or 'no read lease', of a replica's failover fields with failover on."""
    lease = found.get("lease") or {}
    return f"lease {float(lease.get('remaining') or 0):.2f} s left" if lease.get("valid") else "no read lease"


def last_heard(statuses: Iterable[dict]) -> dict[str, float]:
    """name -> seconds since any other reachable replica last heard from it (its lease renewals)."""
    heard: dict[str, float] = {}
    for status in statuses:
        found = failover_of(status)
        for peer, ago in ((found or {}).get("heard") or {}).items():
            if peer != status["name"]:
                heard[peer] = min(float(ago), heard.get(peer, float("inf")))
    return heard


def heard_column(statuses: Iterable[dict]) -> Column:
    """'heard': how long ago the others last heard from each replica, down ones too (failover on)."""
    heard = last_heard(statuses)

    def cell(status: dict) -> Text:
        ago = heard.get(status["name"])
        if ago is None:
            return Text("-", style="dim")
        return Text(f"{ago:.2f} s ago", style="" if status.get("reachable") else "bold red")

    return Column("heard", cell, right=True, down_too=True)


#: the columns of the epoch table, by heading (with ``heard_column``'s 'heard' after them)
FAILOVER_COLUMNS: dict[str, Column] = {column.heading: column for column in (
    Column("replica", lambda status: Text(status["name"])),
    Column("role", role_cell),
    Column("epoch", epoch_cell, right=True),
    Column("lease", lease_cell, right=True),
)}


def epoch_line(epoch: Optional[dict]) -> Optional[Text]:
    """'epoch 2 of replica1, replica2, replica3 (majority 2 of 3)', or that failover is off (None:
    no replica says)."""
    if epoch is None:
        return None
    if not epoch["failover"]:
        return Text(f"failover off: every write needs the votes of all {epoch['configured']} members "
                    "(epoch 0)", "dim")
    majority = f"majority {epoch['majority']} of {epoch['configured']}"
    if not epoch["has_majority"]:
        majority += f": only {len(epoch['answering'])} answer"
    return Text.assemble((f"epoch {epoch['number']}", "bold"), f" of {', '.join(epoch['members'])} ",
                         (f"({majority})", "" if epoch["has_majority"] else "bold red"))


def failover_renderables(statuses: list[dict], epoch: Optional[dict] = None, *,
                         compact: bool = True) -> list[RenderableType]:
    """The epoch line; with failover on, a table of each replica's role, epoch, lease and when it was last
    heard, then why the epoch has not changed yet where a replica says so (``stalled``)."""
    epoch = epoch_view(statuses) if epoch is None else epoch
    line = epoch_line(epoch)
    if line is None:
        return []
    if not epoch["failover"]:
        return [line]
    table = status_table(statuses, columns=(*FAILOVER_COLUMNS.values(), heard_column(statuses)), down=UNREACHABLE,
                         compact=compact)
    return [line, table, *stalled_lines(statuses)]


def stalled_lines(statuses: list[dict]) -> list[Text]:
    """Why the epoch has not changed yet, as the replicas that say so put it (``status()["failover"]["stalled"]``):
    one text per reason, the replicas giving it first; a proposal the voters turned down has a line per answer,
    the voters giving it together."""
    stalled: dict[str, list[str]] = {}
    for status in statuses:
        found = failover_of(status)
        if found is not None and found.get("stalled"):
            stalled.setdefault(str(found["stalled"]), []).append(status["name"])
    names = {status["name"] for status in statuses}
    lines = []
    for why, holders in stalled.items():
        turned_down = stalled_answers(why, names)
        if turned_down is None:
            lines.append(Text(f"{', '.join(holders)}: {why}", "yellow"))
            continue
        proposal, answers = turned_down
        text = Text(f"{', '.join(holders)}: {proposal} not installed:", "yellow")
        for voters, reason in answers:
            text.append(f"\n  {', '.join(voters)}: {reason}", "yellow")
        lines.append(text)
    return lines


def stalled_answers(stalled: str, names: Collection[str]) -> Optional[tuple[str, list[tuple[list[str], str]]]]:
    """'epoch 1 of a, b, c not installed: a: R1; b: R1; c: R2' as ('epoch 1 of a, b, c', [([a, b], R1), ([c], R2)]);
    None for a text of another shape (``names``: the replicas an answer may come from)."""
    proposal, separator, rest = stalled.partition(" not installed: ")
    if not separator:
        return None
    answers: list[list[str]] = []
    for part in rest.split("; "):
        voter, colon, reason = part.partition(": ")
        if colon and voter in names:
            answers.append([voter, reason])
        elif answers:
            answers[-1][1] += "; " + part  # a reason that has '; ' in it
        else:
            return None
    grouped: dict[str, list[str]] = {}
    for voter, reason in answers:
        grouped.setdefault(reason, []).append(voter)
    return proposal, [(voters, reason) for reason, voters in grouped.items()]


def report_renderables(name: str, payload: dict) -> list[RenderableType]:
    """What ``status``, ``health`` and ``member list`` show, in the console and one-shot alike."""
    if name == "status":
        return status_renderables(payload)
    if name == "health":
        return health_renderables(payload)
    if name == "verify":
        return verify_renderables(payload)
    return member_renderables(payload["members"])


def verify_renderables(payload: dict) -> list[RenderableType]:
    """One line per member: its data matches its digest (entries, time), or what is damaged; then the verdict."""
    lines: list[RenderableType] = []
    for result in payload["replicas"]:
        if not result.get("reachable"):
            lines.append(Text.assemble(f"{result['name']}: ", ("not checked", "bold red"), f": {result['error']}"))
        elif result.get("ok"):
            lines.append(Text.assemble(f"{result['name']}: ", ("ok", "green"),
                                       f": {result['live']} keys, digest {result['computed_digest'][:12]} "
                                       f"recomputed from the data ({result['seconds']:.2f} s)"))
        else:
            damage = result.get("damage") or {}
            lines.append(Text.assemble(f"{result['name']}: ", ("damaged", "bold red"),
                                       f": {damage.get('what')} ({damage.get('where')}); see its log and status"))
    healthy = payload["healthy"]
    lines.append(Text("every member's data matches its digest" if healthy else
                      "not every member's data could be verified", "bold green" if healthy else "bold red"))
    return lines


def status_renderables(payload: dict) -> list[RenderableType]:
    """The status table (statuses annotated by ``annotate_digests``), the epoch and each replica's role and
    lease, then what is wrong and the verdict."""
    statuses = payload["replicas"]
    reachable = [s for s in statuses if s.get("reachable")]
    same = [Text("all reachable replicas hold the same data", "green")] \
        if reachable and len({s["digest"] for s in reachable}) == 1 else []
    return [status_table(statuses), *same, *failover_renderables(statuses, payload.get("epoch")),
            *verdict_lines(statuses, payload)]


def verdict_lines(statuses: list[dict], found: dict) -> list[Text]:
    """One line per problem (which member, why, what to do), then the verdict."""
    lines = [Text(problem_sentence(each), "red" if each["problem"] == UNREACHABLE else "yellow")
             for each in found["problems"]]
    return [*lines, verdict_line(statuses, found)]


def verdict_line(statuses: list[dict], found: dict) -> Text:
    """'healthy: ...' in green or 'unhealthy: ...' in red."""
    return Text(summary(statuses, found), "bold green" if found["healthy"] else "bold red")


def health_renderables(payload: dict) -> list[RenderableType]:
    """Like ``etcdctl endpoint health``: one line per member (with failover on, its role, epoch and lease),
    the epoch, what is wrong with the whole cluster, then the verdict."""
    lines: list[RenderableType] = []
    for member in payload["members"]:
        where = f"{member['name']} ({member.get('uri') or NO_ADDRESS})"
        if member["healthy"]:
            took = f", took {member['took_ms']:.2f} ms" if "took_ms" in member else ""
            lines.append(Text.assemble(f"{where} is ", ("healthy", "green"), f": serving{_standing(member)}{took}"))
        else:
            why = "; ".join(f"{p['problem']} ({p['detail']})" for p in member["problems"])
            lines.append(Text.assemble(f"{where} is ", ("unhealthy", "bold red"), f": {why}"))
    line = epoch_line(payload.get("epoch"))
    if line is not None:
        lines.append(line)
    lines.extend(Text(problem_sentence(each), "bold red") for each in payload["problems"] if each["member"] is None)
    return [*lines, verdict_line(payload["members"], payload)]


def _standing(member: dict) -> str:
    """', member of epoch 2, lease 0.84 s left' for a healthy member with failover on ('' otherwise)."""
    found = member.get("failover")
    if not isinstance(found, dict) or not found.get("failover"):
        return ""
    number = (found.get("epoch") or {}).get("number", 0)
    return f", {found.get('role')} of epoch {number}, {lease_phrase(found)}"


def member_renderables(members: list[dict]) -> list[RenderableType]:
    """The member table (name, URI, reachable, role), then why each member that is not plainly one is not."""
    table = make_table(("member", "reachable", "role", "uri"), compact=True, no_wrap=True)
    notes = []
    for member in members:
        name = f"{member['name']} *" if member.get("in_use") else member["name"]
        reachable = Text("yes", "green") if member["reachable"] else Text("no", "bold red")
        role = member["role"]
        shown = "outside" if role == OUTSIDE_EPOCH else role.split(":", 1)[0]  # the uri keeps its room
        table.add_row(name, reachable, Text(shown, "green" if role == "member" else "yellow"),
                      member.get("uri") or Text(NO_ADDRESS, "dim"))
        if not member["reachable"]:
            notes.append(Text(f"{member['name']} is unreachable ({member.get('error')})", "red"))
        elif not member.get("registered", True):
            notes.append(Text(f"{member['name']} is not registered in the name server (reached at its last "
                              "known address); it registers again by itself", "yellow"))
        if ":" in role:
            notes.append(Text(f"{member['name']} is {role}", "yellow"))
        elif role == OUTSIDE_EPOCH:
            notes.append(Text(f"{member['name']} is outside the epoch: it may have missed writes and refuses "
                              "reads until the members take it in", "yellow"))
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


def trace_renderable(trace: dict) -> "TraceView":
    """A two-phase commit round, one message a line, top to bottom."""
    return TraceView(trace)


class TraceView:
    """A two-phase commit round as lines that fit the width they are shown at: a result too
    long for its line goes on below it, between words, under where it began."""

    def __init__(self, trace: dict) -> None:
        self.trace = trace

    def __rich_console__(self, console: Console, options: Any) -> Iterator[Text]:
        events = self.trace.get("trace", [])
        coordinator = coordinator_of(self.trace)
        width = max([len(coordinator)] + [len(str(e["participant"])) for e in events])
        yield Text(trace_heading(self.trace), style="bold")
        for phase, run in trace_phases(events):
            yield Text(f"  {phase}", style="bold cyan")
            for event in run:
                result = str(event["result"])
                lead = f"  {event['at_ms']:9.2f} ms  {event['message']:<13}  {trace_route(event, coordinator, width)}  "
                room = max(20, options.max_width - len(lead))
                pieces = textwrap.wrap(result, room, break_on_hyphens=False) or [""]
                yield Text.assemble(lead, (pieces[0], trace_result_style(result)))
                for piece in pieces[1:]:
                    yield Text.assemble(" " * len(lead), (piece, trace_result_style(result)))

    def plain(self) -> str:
        """The lines as text, unwrapped (for tests and logs)."""
        console = Console(width=10_000, record=True, color_system=None, file=io.StringIO())
        console.print(self)
        return console.export_text().rstrip("\n")


# ------------------------------------------------------------------ results
def result_renderables(result: Result, *, raw: bool = False) -> list[RenderableType]:
    """What the console shows for a successful data command (``raw``: values and keys without quotes)."""
    payload, latency = result.payload, latency_text(result.latency_ms)
    name = result.command.name
    if name == "put":
        renderables: list[RenderableType] = [Text.assemble(("OK", "bold green"), latency)]
    elif name == "get" and "items" in payload:
        renderables = _items_lines(payload, latency, raw=raw)
    elif name == "get":
        renderables = [Text.assemble(shown(payload["value"], raw=raw), latency)]
    elif name == "delete" and "prefix" in payload:
        count = payload["deleted"]
        renderables = [Text.assemble(("deleted", "bold green"), f": {count} key{'s' if count != 1 else ''} starting "
                                     f"with {shown(payload['prefix'], raw=raw)}, in one transaction", latency)]
    elif name == "delete":
        renderables = [Text.assemble(("deleted", "bold green"), latency)]
    elif name == "count":
        under = f" starting with {shown(payload['prefix'], raw=raw)}" if payload["prefix"] else ""
        renderables = [Text.assemble(f"{payload['count']} key{'s' if payload['count'] != 1 else ''}{under}", latency)]
    elif name == "cas":
        was = "absent" if payload["expected"] is None else shown(payload["expected"], raw=raw)
        renderables = [Text.assemble(("OK", "bold green"), f": {payload['key']} was {was}, now "
                                     f"{shown(payload['value'], raw=raw)}", latency)]
    elif name == "txn":
        count = len(payload["writes"])
        renderables = [Text.assemble(("OK", "bold green"), f": {count} write{'s' if count != 1 else ''} "
                                "committed atomically", latency)]
    elif name == "keys":
        renderables = _keys_lines(payload, latency, raw=raw)
    elif name == "snapshot":
        renderables = [snapshot_line(payload) + latency]
    elif name in ("exists", "ping"):
        renderables = [Text.assemble(answer_text(result), latency)]
    else:
        renderables = [*report_renderables(name, payload), latency_text(result.latency_ms, lead="")]
    if result.trace is not None:
        renderables.append(trace_renderable(result.trace))
    return renderables


def answer_text(result: Result) -> Text:
    """exists: '1' or '0' (as redis answers); ping: 'PONG from REPLICA'."""
    if result.command.name == "exists":
        return Text("1" if result.payload["exists"] else "0")
    return Text.assemble((result.payload["answer"], "bold green"), f" from {result.payload['replica']}")


def _items_lines(payload: dict, latency: Text, *, raw: bool = False) -> list[RenderableType]:
    return _page([Text(f"{index}) {shown(item['key'], raw=raw)} = {shown(item['value'], raw=raw)}")
                  for index, item in enumerate(payload["items"], 1)], payload, latency)


def _keys_lines(payload: dict, latency: Text, *, raw: bool = False) -> list[RenderableType]:
    return _page([Text(f"{index}) {shown(key, raw=raw)}") for index, key in enumerate(payload["keys"], 1)],
                 payload, latency)


def _page(lines: list[RenderableType], payload: dict, latency: Text) -> list[RenderableType]:
    """A page of keys: its lines, how many, and the command for the next page when it was cut."""
    count = Text(f"{len(lines)} key{'s' if len(lines) != 1 else ''}" if lines else "(no keys)")
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
    lines.append(Text("values with spaces go in quotes, as in a shell; 'help COMMAND' shows an example; "
                      "set and del are the redis names of put and delete", "dim"))
    return Text("\n").join(lines)
