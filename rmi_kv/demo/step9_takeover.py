"""Step 9: coordinators die with failover on: the epoch that leaves one out finishes its transaction, ABORT
when no member holds the COMMIT, COMMIT when one does; the keys are free, and the coordinators return and
agree."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from rich.padding import Padding
from rich.text import Text

from rmi_kv.cli.health import epoch_view, failover_of
from rmi_kv.cli.render import (IN_DOUBT_LISTED, STATUS_COLUMNS, Column, epoch_line, make_table, quoted, status_table,
                               value_text)
from rmi_kv.core.epochs import majority
from rmi_kv.demo import crashes
from rmi_kv.demo.scenario import FAILOVER_ON
from rmi_kv.errors import OutcomeUnknown, RmiKvError
from rmi_kv.server.cluster import wait_for

if TYPE_CHECKING:
    from rmi_kv.demo.walkthrough import Demo

TITLE = "The coordinator dies: a new epoch takes over"
SHOWN = "take-over: epochs settle in-doubt writes"
EXPLANATION = (
    "In step 7 the coordinator died after its decision and the participants waited in doubt until it came "
    "back: with --failover off nobody else may decide. With failover on, the epoch that leaves a dead "
    "coordinator out finishes its transactions as it is installed: the member that proposes it asks every "
    "member what it holds of each transaction in doubt, and settles it COMMIT if any holds the COMMIT, ABORT "
    "otherwise. Every member applies the outcome before it installs the epoch, and the keys are free. Here "
    "two coordinators die: one right after forcing COMMIT, before any doCommit left (the crash of step 7), "
    "the other after its doCommit reached one participant. When they return, they rejoin as newcomers and "
    "take the members' data: neither contradicts what the epochs settled.")


@dataclass(frozen=True)
class Crash:
    """One coordinator's crash: its failpoint, the key it writes, where it dies, the outcome to expect."""

    failpoint: str
    key: str
    where: str
    outcome: str  # "commit" or "abort"


#: COMMIT forced at the coordinator, no doCommit sent: no member holds it (the crash of step 7)
BEFORE_ANY_DO_COMMIT = Crash("coordinator.after_decision=once:crash", "demo:takeover:1",
                             "after forcing COMMIT, before any doCommit", "abort")
#: doCommit reaches one participant only: it holds the COMMIT, the others are in doubt
AFTER_ONE_DO_COMMIT = Crash("coordinator.mid_commit=once:crash", "demo:takeover:2",
                            "after its doCommit reached one participant", "commit")
OLD, NEW, AFTER = "old", "new", "free again"


@crashes.crash_step
def run(demo: Demo, names: list[str]) -> None:
    """replica1 dies after its decision (settled ABORT), then replica2 mid-commit (settled COMMIT); each time the
    others' new epoch settles the transaction and its key is free; both return and agree."""
    crashing = {names[0]: BEFORE_ANY_DO_COMMIT, names[1]: AFTER_ONE_DO_COMMIT}
    _failover_on(demo, names)
    for crash in crashing.values():
        demo.kv(names[2]).put(crash.key, OLD)
    crashes.arm_each(demo, {name: crash.failpoint for name, crash in crashing.items()},
                     until=lambda: crashes.failover_settled(demo, names))
    down: list[str] = []
    for coordinator, crash in crashing.items():
        freed = _take_over(demo, names, coordinator, crash, down)
        down.append(coordinator)
        if crash is BEFORE_ANY_DO_COMMIT:
            demo.show(_wrapped(f"In step 7 this same crash, with --failover off, kept the key locked until "
                               f"{coordinator} came back, and its COMMIT record then decided; here the key was "
                               f"free {freed:.1f} s after the crash, with {coordinator} still down."))
    _return(demo, names, crashing)


def _failover_on(demo: Demo, names: list[str]) -> None:
    """Every replica with failover on, a member of one epoch with a lease (after step 8 they already are)."""
    on = [s for s in demo.statuses() if (failover_of(s) or {}).get("failover")]
    if len(on) < len(names):
        demo.action("every replica restarts with --failover on (until now: --failover off)")
        demo.cluster.restart_all(replica_args=crashes.with_failover(demo.cluster.replica_args, FAILOVER_ON))
    wait_for(lambda: crashes.failover_settled(demo, names), timeout=20.0, what="every replica a member with a lease")


def _take_over(demo: Demo, names: list[str], coordinator: str, crash: Crash, down: list[str]) -> float:
    """``coordinator`` dies at ``crash`` (``down``: replicas already down); the others' new epoch settles its
    transaction; the key is free. Returns how many seconds after the crash it was."""
    others = [name for name in names if name != coordinator and name not in down]
    demo.heading(f"{coordinator} coordinates a write and dies {crash.where}")
    demo.action(f"PUT {crash.key} = {quoted(NEW)} through {coordinator}")
    try:
        demo.kv(coordinator).put(crash.key, NEW)
        error: Optional[OutcomeUnknown] = None
    except OutcomeUnknown as unknown:
        error = unknown
        demo.show(_wrapped(f"client got OutcomeUnknown: {unknown}", style="yellow"))
    demo.require(error is not None, "the client got OutcomeUnknown: no answer came, and rmi_kv never guesses",
                 "expected OutcomeUnknown, the write returned normally")
    crashes.confirm_crash(demo, coordinator, where=crash.where)
    crashed_at = time.monotonic()

    statuses = demo.statuses()
    doubting = sorted(s["name"] for s in statuses if s.get("reachable") and s.get("in_doubt"))
    txids = sorted({txid for s in statuses if s.get("reachable") for txid in s.get("in_doubt") or ()})
    demo.require(len(txids) == 1 and bool(doubting), f"its transaction waits in doubt: {txids[0] if txids else ''}",
                 f"expected one transaction in doubt, the replicas hold {txids or 'none'}")
    txid = txids[0]
    reads = {name: demo.kv(name).get(crash.key) for name in others if name not in doubting}
    holders = sorted(name for name, value in reads.items() if value == NEW)
    _show_in_doubt(demo, statuses, coordinator, txid, reads)
    if crash.outcome == "commit":
        demo.check(len(holders) == 1 and sorted(holders + doubting) == sorted(others),
                   f"{_listed(holders)} holds the COMMIT; {_listed(doubting)} hold it in doubt, key locked",
                   f"expected one member with the COMMIT and the others in doubt; in doubt: {doubting}, "
                   f"the others read {reads}")
    else:
        demo.check(doubting == others, f"no member holds the COMMIT: all {len(others)} hold it in doubt, key locked",
                   f"expected all of {others} in doubt, got {doubting}")

    def settled() -> Optional[list[dict]]:
        """Every other replica in an epoch without the coordinator that settled ``txid``; nothing in doubt."""
        statuses = demo.statuses()
        up = [s for s in statuses if s.get("reachable")]
        plans = [(failover_of(s) or {}).get("epoch") or {} for s in up]
        if (sorted(s["name"] for s in up) == others and not any(txid in s.get("in_doubt", ()) for s in up)
                and all(txid in (plan.get("settled") or {}) for plan in plans)):
            return statuses
        return None

    statuses = wait_for(settled, timeout=10.0, what=f"an epoch without {coordinator} to settle {txid}")
    freed = time.monotonic() - crashed_at
    plans = [(failover_of(s) or {}).get("epoch") or {} for s in statuses if s.get("reachable")]
    plan = plans[0]
    outcome, proposer = str(plan["settled"][txid]), plan.get("proposer")
    demo.heading(f"{freed:.1f} s after the crash")
    line = epoch_line(epoch_view(statuses))
    if line is not None:
        demo.show(line)
    table = make_table(("transaction", "outcome", "proposed and settled by"))
    table.add_row(txid, Text(outcome.upper(), style="bold"), f"{proposer} (epoch {plan['number']})")
    demo.show(table)
    same = all(p.get("number") == plan["number"] and p.get("settled") == plan["settled"]
               and p.get("proposer") == proposer for p in plans)
    demo.check(outcome == crash.outcome and same,
               f"epoch {plan['number']}, without {coordinator}, settled it {outcome.upper()}; every member applied it",
               f"expected {crash.outcome.upper()} on every member; they report {plans}")
    demo.check(proposer in others, f"{proposer} proposed the epoch and settled it, asking every member",
               f"the epoch's proposer is {proposer!r}, not one of {others}")
    demo.show(_wrapped(_why(outcome, coordinator, holders, len(names)), style="dim"))

    expected = NEW if crash.outcome == "commit" else OLD
    seen = demo.read_everywhere(crash.key, others)
    demo.check(set(seen.values()) == {expected}, f"a read tells the outcome: all {len(others)} give {quoted(expected)}",
               f"reads of {crash.key} gave {seen}")
    through = doubting[-1]
    demo.action(f"PUT {crash.key} = {quoted(AFTER)} through {through}, which held it in doubt")
    try:
        demo.kv(through).put(crash.key, AFTER)
        refused: Optional[RmiKvError] = None
    except RmiKvError as failed:
        refused = failed
    demo.check(refused is None, "the key is free: the write committed", f"the key is still held: {refused}")
    return freed


def _show_in_doubt(demo: Demo, statuses: list[dict], coordinator: str, txid: str, reads: dict) -> None:
    """A row per replica: what it holds of ``txid`` (the COMMIT, or PREPARED with the key locked)."""

    def holds(status: dict) -> Text:
        if txid in (status.get("in_doubt") or ()):
            return Text("PREPARED: key locked", style="yellow")
        value = reads.get(status["name"])
        return Text(f"COMMIT: reads {quoted(value)}" if value == NEW else f"reads {quoted(value)}", style="green")

    demo.heading(f"while {coordinator} is down")
    columns = (STATUS_COLUMNS["replica"], Column("holds", holds), IN_DOUBT_LISTED)
    demo.show(status_table(statuses, columns=columns, down="down", compact=False))
    line = epoch_line(epoch_view(statuses))
    if line is not None:
        demo.show(line)


def _why(outcome: str, coordinator: str, holders: list[str], replicas: int) -> str:
    """Why ``outcome`` is the only safe one, in two sentences."""
    if outcome == "commit":
        return (f"Why COMMIT: {_listed(holders)} holds the COMMIT, so {coordinator} had decided COMMIT, and "
                f"readers there see {quoted(NEW)} (it was read above); a client may have been told \"committed\". "
                "ABORT would take back a write that was seen.")
    return (f"Why ABORT: no member holds the COMMIT, only {coordinator}, which is down. A write acknowledged "
            f"to a client has its COMMIT at a majority ({majority(range(replicas))} of {replicas}) and the "
            "members of every epoch are a majority too, so one of them would hold it: no client was told "
            "\"committed\", and ABORT takes back nothing anyone saw.")


def _return(demo: Demo, names: list[str], crashing: dict[str, Crash]) -> None:
    """The coordinators start again, rejoin as newcomers, and agree with the members."""
    down, keys = list(crashing), [crash.key for crash in crashing.values()]
    demo.action(f"{' and '.join(down)} start again; they rejoin as newcomers")
    starting = [demo.cluster.start_replica(name, wait=False) for name in down]
    for child in starting:
        child.wait_ready()
    statuses = wait_for(lambda: crashes.failover_settled(demo, names), timeout=20.0,
                        what=f"{' and '.join(down)} members again")
    seen = {key: demo.read_everywhere(key, names) for key in keys}
    demo.heading(f"{' and '.join(down)} rejoined")
    columns = (STATUS_COLUMNS["replica"], *(Column(key, lambda s, key=key: value_text(seen[key][s["name"]]))
                                            for key in keys), IN_DOUBT_LISTED, STATUS_COLUMNS["digest"])
    demo.show(status_table(statuses, columns=columns, compact=False))
    demo.check(all(set(values.values()) == {AFTER} for values in seen.values()),
               f"{' and '.join(down)} agree: every replica gives {quoted(AFTER)} for both keys",
               f"reads after the rejoin gave {seen}")
    for name, crash in crashing.items():
        if crash.outcome == "abort":
            demo.show(_wrapped(f"{name} had applied its own COMMIT of {quoted(NEW)} to {crash.key} before it "
                               "died, and the epoch settled that write ABORT: it served no read with it (outside "
                               "the epoch, no lease), and as a newcomer it emptied its data and copied a "
                               "member's.", style="dim"))
    demo.agree_check(statuses, len(names))


def _listed(names: list[str]) -> str:
    return ", ".join(names)


def _wrapped(text: str, *, style: str = "") -> Padding:
    """Text indented by two and wrapped at the console's width (not left to the terminal)."""
    return Padding(Text(text, style=style), (0, 0, 0, 2))
