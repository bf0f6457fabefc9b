"""Step 8: failover: a replica dies, writes abort while its lease runs out, the others form a new epoch and
writes go on; the replica returns, is taken in as a newcomer, catches up and is a member again."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from rich.text import Text

from rmi_kv.cli.health import PHRASES, UNREACHABLE, epoch_view, failover_of, member_problems, verdict
from rmi_kv.cli.render import epoch_cell, lease_cell, make_table, quoted, role_cell, stalled_lines, verdict_line
from rmi_kv.demo import crashes
from rmi_kv.demo.scenario import FAILOVER_ON, STRICT
from rmi_kv.errors import MembershipChanged, ReplicaUnavailable, TransactionAborted
from rmi_kv.server.cluster import wait_for

if TYPE_CHECKING:
    from rmi_kv.demo.walkthrough import Demo

TITLE = "A replica dies: failover to a new epoch"
SHOWN = "failover: new epoch, writes go on, rejoin"
EXPLANATION = (
    "So far the demo's replicas ran with --failover off, the textbook's strict protocol: every member votes on "
    "every write, so one replica down stopped all writes (step 6). Now they restart with --failover on, the "
    "default of run_server.py. Four times a lease (1 s), each replica renews its read lease with the others, and "
    "their answers tell who is alive. A member unheard for half a lease is left out of a new epoch, which a "
    "majority (3 of 5) must vote for; from then on every write needs the members of that epoch only. But the dead "
    "replica may still hold a lease and serve reads with it: a replica votes for an epoch without it only once "
    "the lease it granted it has run out, so until then writes abort. When it returns, it knows an old epoch "
    "and refuses reads; a new epoch takes it in as a newcomer: it empties its data, copies it from a member, "
    "and serves once it holds a lease again.")

KEY = "demo:failover"
#: slows the returning replica's copy, so that the table shows it catching up
SLOW_COPY = "recovery.catch_up_chunk=once:delay:1500"
#: between two write attempts while the lease runs out
ATTEMPT_INTERVAL = 0.1


@dataclass
class Attempt:
    """One PUT while the victim is down: seconds after the kill, and its outcome."""

    at: float
    outcome: str  # "committed" or "aborted: REASON"


def _reason(error: Exception) -> str:
    """What a failed write says, per replica where it names them."""
    replicas = getattr(error, "replicas", None) or {}
    return "; ".join(f"{why}" for _, why in sorted(replicas.items())) or str(error)


@crashes.crash_step
def run(demo: Demo, names: list[str]) -> None:
    """replica4 is killed; writes through replica2 abort until the others form an epoch without it, then commit;
    replica4 starts again, is taken in by another epoch, copies the data, and is a member again."""
    victim, through = names[3], names[1]
    survivors = [name for name in names if name != victim]
    cluster = demo.cluster
    demo.action("every replica restarts with --failover on (until now: " + " ".join(STRICT) + ")")
    cluster.restart_all(replica_args=crashes.with_failover(cluster.replica_args, FAILOVER_ON))
    statuses = wait_for(lambda: crashes.failover_settled(demo, names), timeout=20.0,
                        what="every replica a member with a lease")
    first = epoch_view(statuses)
    assert first is not None
    demo.show_epochs(statuses, title=f"failover on: one epoch of all {len(names)} replicas, each holding a lease")
    demo.check(first["members"] == sorted(names),
               f"all {len(names)} replicas are members of epoch {first['number']}, each with a read lease",
               f"epoch {first['number']} has the members {first['members']}, not {names}")
    demo.kv(through).put(KEY, "before")

    demo.action(f"{victim} is killed (SIGKILL): it cannot give its lease back")
    killed_at = time.monotonic()
    cluster.kill_replica(victim)
    value = f"written without {victim}"
    demo.action(f"PUT {KEY} = {quoted(value)} through {through}, again every {ATTEMPT_INTERVAL:g} s until it commits")
    attempts, stalled = _write_until_committed(demo, through, value, killed_at)
    _show_attempts(demo, attempts)
    if stalled:
        demo.say(("meanwhile, why the epoch had not changed yet (status()[\"failover\"][\"stalled\"]):", "dim"))
        for line in stalled:
            demo.show(line)
    aborted = [a for a in attempts if a.outcome != "committed"]
    demo.check(bool(aborted) and victim in aborted[0].outcome,
               f"writes abort at first: {len(aborted)} attempts aborted, the first naming {victim}",
               f"the first write after the kill should abort naming {victim}; got {attempts[:1]}")
    resumed = attempts[-1].at
    lease = float((failover_of(statuses[0]) or {}).get("lease", {}).get("seconds") or 0)
    demo.require(attempts[-1].outcome == "committed",
                 f"{resumed:.1f} s after the kill a write committed without {victim} (its lease: {lease:g} s)",
                 f"no write committed without {victim}")

    def new_epoch() -> Optional[list[dict]]:
        """Every other replica a member of one epoch without ``victim``, with a lease."""
        statuses = demo.statuses()
        up = [s for s in statuses if s.get("reachable")]
        epoch = epoch_view(statuses)
        if (epoch and epoch["members"] == survivors and [s["name"] for s in up] == survivors
                and all(crashes.member_with_lease(s, epoch["number"]) for s in up)):
            return statuses
        return None

    statuses = wait_for(new_epoch, timeout=10.0, what=f"every other replica in the epoch without {victim}")
    second = epoch_view(statuses)
    assert second is not None
    demo.show_epochs(statuses, title=f"while {victim} is down")
    demo.check(second["number"] > first["number"],
               f"the {len(survivors)} others formed epoch {second['number']} of {', '.join(second['members'])}: "
               f"a majority of the {second['configured']} replicas",
               f"expected a new epoch without {victim}, got {second}")
    seen = demo.read_everywhere(KEY, survivors)
    demo.check(set(seen.values()) == {value}, f"writes go on: the write is on all {len(survivors)} members",
               f"reads through the members gave {seen}")
    found = verdict(statuses)
    demo.show(verdict_line(statuses, found))
    demo.check([(p["member"], p["problem"]) for p in found["problems"]] == [(victim, UNREACHABLE)],
               f"health names {victim} only, as {UNREACHABLE}: the epoch holds a majority",
               f"health should name only {victim}; it says: {found['problems']}")

    _rejoin(demo, names, victim, value, second["number"])


def _write_until_committed(demo: Demo, through: str, value: str, killed_at: float) -> tuple[list[Attempt], list]:
    """PUT through ``through`` until one commits (at most 15 s): the attempts, and the lines saying why the
    epoch had not changed yet, the first time a replica said so meanwhile."""
    attempts: list[Attempt] = []
    stalled: list = []

    def attempt() -> bool:
        try:
            demo.kv(through).put(KEY, value)
        except (TransactionAborted, MembershipChanged, ReplicaUnavailable) as error:
            attempts.append(Attempt(time.monotonic() - killed_at, f"aborted: {_reason(error)}"))
            if not stalled:
                stalled.extend(stalled_lines(demo.statuses()))
            return False
        attempts.append(Attempt(time.monotonic() - killed_at, "committed"))
        return True

    wait_for(attempt, timeout=15.0, interval=ATTEMPT_INTERVAL, what="a write to commit")
    return attempts, stalled


def _show_attempts(demo: Demo, attempts: list[Attempt]) -> None:
    """One row per run of attempts with the same outcome: when (seconds after the kill), how many, what."""
    runs: list[list[Attempt]] = []
    for each in attempts:
        if runs and runs[-1][0].outcome == each.outcome:
            runs[-1].append(each)
        else:
            runs.append([each])
    table = make_table(("after the kill", "attempts", "outcome"), right=("attempts",))
    for run_ in runs:
        span = f"{run_[0].at:.2f} s" if len(run_) == 1 else f"{run_[0].at:.2f} to {run_[-1].at:.2f} s"
        outcome = run_[0].outcome
        table.add_row(span, str(len(run_)), Text(outcome, style="green" if outcome == "committed" else "yellow"))
    demo.show(table)


@dataclass
class Snapshot:
    """How the returning replica looked at one moment: seconds after its start, its status, and everyone's."""

    at: float
    status: dict
    statuses: list


def _looks(status: dict) -> tuple:
    found = failover_of(status) or {}
    return (found.get("role"), (found.get("epoch") or {}).get("number"), bool((found.get("lease") or {}).get("valid")),
            bool(status.get("catching_up")))


def _rejoin(demo: Demo, names: list[str], victim: str, value: str, without: int) -> None:
    """``victim`` starts again; every change in how it looks is a row, until it is a member with a lease again."""
    demo.action(f"{victim} starts again, with its copy slowed by the failpoint {SLOW_COPY} (to watch it)")
    started = time.monotonic()
    child = demo.cluster.start_replica(victim, failpoints=[SLOW_COPY], wait=False)
    snapshots: list[Snapshot] = []
    read: list[Any] = []
    probing: list[threading.Thread] = []

    def rejoined() -> Optional[list[dict]]:
        statuses = demo.statuses()
        mine = next((s for s in statuses if s["name"] == victim), None)
        if mine is None or not mine.get("reachable"):
            return None
        if not snapshots or _looks(snapshots[-1].status) != _looks(mine):
            snapshots.append(Snapshot(time.monotonic() - started, mine, statuses))
        settled = crashes.failover_settled(demo, names)
        if not settled and not probing:
            # in the background: a client pinned to a replica that rejoins waits for it, and how the
            # replica looks meanwhile is what the table shows
            probing.append(threading.Thread(target=probe, name="demo-probe", daemon=True))
            probing[0].start()
        return settled

    def probe() -> None:
        client = demo.connect(victim)  # its own client: a proxy belongs to the thread that made it
        try:
            read.append(("answered", client.get(KEY)))
        except ReplicaUnavailable as error:
            read.append(("refused", str(error)))
        finally:
            client.close()

    statuses = wait_for(rejoined, timeout=30.0, what=f"{victim} a member again")
    child.wait_ready()
    if probing:
        probing[0].join(timeout=15.0)
    if not snapshots or _looks(snapshots[-1].status) != _looks(next(s for s in statuses if s["name"] == victim)):
        snapshots.append(Snapshot(time.monotonic() - started, next(s for s in statuses if s["name"] == victim),
                                  statuses))
    _show_snapshots(demo, victim, snapshots)
    if read:
        kind, answer = read[0]
        demo.say((f"  a GET of {KEY} through {victim} while it rejoined ", "dim"),
                 (f"was refused: {answer}" if kind == "refused" else f"answered {quoted(answer)}", "yellow"))
        demo.check(kind == "refused" or answer == value,
                   f"{victim} gave no stale read while it rejoined ({kind})",
                   f"{victim} answered {answer!r} while it rejoined, not {value!r}")
    def plan_of(snapshot: Snapshot) -> dict:
        return (failover_of(snapshot.status) or {}).get("epoch") or {}

    # seen copying, or (a quick copy between two looks) a member of the epoch that took it in as a newcomer
    taken = [s for s in snapshots if _looks(s.status)[0] == "catching up" or s.status.get("catching_up")] or \
        [s for s in snapshots if victim in plan_of(s).get("newcomers", ())]
    epoch = plan_of(taken[0]) if taken else {}
    demo.check(bool(taken) and int(epoch.get("number", 0)) > without and victim in epoch.get("newcomers", ()),
               f"{victim} was taken in by epoch {epoch.get('number')} as a newcomer, and caught up by copying "
               f"from {epoch.get('source')}",
               f"{victim} was not seen catching up as a newcomer to an epoch after {without}")
    final = epoch_view(statuses)
    assert final is not None
    demo.show_epochs(statuses, title=f"{victim} rejoined")
    demo.check(crashes.member_with_lease(next(s for s in statuses if s["name"] == victim), final["number"]),
               f"{victim} is a member of epoch {final['number']} again, with a read lease",
               f"{victim} is not a member with a lease")
    held = demo.kv(victim).get(KEY)
    demo.check(held == value, f"{victim} holds the write made while it was down ({quoted(held)})",
               f"{victim} gives {held!r} for {KEY}, not {value!r}")
    demo.agree_check(statuses, len(names))


def _show_snapshots(demo: Demo, victim: str, snapshots: list[Snapshot]) -> None:
    """A row per change: when, its role, epoch and lease, and what health says of it."""
    demo.heading(f"{victim} after it started again")
    table = make_table(("after", "role", "epoch", "lease", "what health says"), right=("epoch", "lease"))
    for snapshot in snapshots:
        problems = member_problems(snapshot.status, snapshot.statuses)
        said = (Text("; ".join(f"{PHRASES.get(p['problem'], p['problem'])} ({p['detail']})" for p in problems),
                     style="yellow") if problems else Text("healthy: a member with a read lease", style="green"))
        table.add_row(f"{snapshot.at:.2f} s", role_cell(snapshot.status), epoch_cell(snapshot.status),
                      lease_cell(snapshot.status), said)
    demo.show(table)
