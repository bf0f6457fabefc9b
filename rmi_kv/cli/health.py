"""Whether the cluster is healthy: one verdict over the members' status dicts.

``KeyValueClient.status()`` gives one dict per member: every name the name
server lists and every member a reachable replica reports, reachable or not.
``verdict`` turns them into ``healthy``, ``in_sync`` and a list of problems,
each naming a member, what is wrong and, where known, what to do:

    {"member": "replica4", "problem": "unreachable", "detail": "...", "hint": "..."}

A member is healthy when it answers, serves, is not catching up, holds no
transaction in doubt for longer than ``IN_DOUBT_MOMENT``, and holds the data
the others hold; with failover on, also when it is a member of the latest
epoch any member reports (``outside the epoch`` otherwise), holds a read
lease (``no read lease``) and is still in the member list (``removed``).
A problem of the whole cluster has no member
(``"member": None``): ``no majority`` when fewer than a majority of the
configured replicas answer, so no epoch can take writes. ``epoch_view``
says which epoch the members report, its members, and whether a majority
answers. ``status`` and ``health`` exit with ``ClusterUnhealthy.exit_code``
unless every member is healthy. Everything here is a pure function over
plain dicts, so the rules are tested without a network.
"""
from __future__ import annotations

from typing import Any, Optional

from rmi_kv.config import Timeouts
from rmi_kv.core import txid as txids
from rmi_kv.core.epochs import majority
from rmi_kv.core.failover import CATCHING_UP as COPYING_ROLE, OUTSIDE as OUTSIDE_ROLE, REMOVED as REMOVED_ROLE

#: seconds a transaction may stay PREPARED and undecided at a participant before
#: it counts as a problem: a round in flight is decided within a vote timeout
#: plus a decision timeout (2 s each by default); one more second is slack
IN_DOUBT_MOMENT = Timeouts().vote + Timeouts().decision + 1.0

UNREACHABLE, NOT_SERVING, CATCHING_UP, IN_DOUBT, DIGEST_DIFFERS = (
    "unreachable", "not serving", "catching up", "in doubt", "digest differs")
#: with failover on: a member not in the latest epoch, one no longer in the member list, and
#: (a problem of the whole cluster) fewer than a majority of the replicas answering
OUTSIDE_EPOCH, REMOVED, NO_MAJORITY = OUTSIDE_ROLE, REMOVED_ROLE, "no majority"
#: with failover on: a member of the latest epoch whose read lease ran out (it refuses reads)
NO_LEASE = "no read lease"
#: a member found its data damaged and has not repaired it yet
DATA_DAMAGED = "data damaged"

#: how a sentence says each problem of a member
PHRASES = {UNREACHABLE: "is unreachable", NOT_SERVING: "is not serving", CATCHING_UP: "is catching up",
           IN_DOUBT: "has transactions in doubt", DIGEST_DIFFERS: "holds different data",
           OUTSIDE_EPOCH: "is outside the epoch", REMOVED: "was removed from the members",
           NO_LEASE: "holds no read lease", DATA_DAMAGED: "found its data damaged"}

#: what to do about a member outside the epoch: nothing, it is taken in by itself
_REJOINS = "the members take it into a new epoch once they hear it: ask again in a moment"

#: the address shown for a member nobody knows the address of
NO_ADDRESS = "no known address"

#: at most this many in-doubt transactions are named in a problem
_NAMED_TXIDS = 3


def annotate_digests(statuses: list[dict]) -> list[dict]:
    """Add ``digest_matches`` to each status: True when its digest is the one most
    reachable replicas share, False when it differs, None when unreachable or
    when there is nothing to compare with (or no majority)."""
    common = _common_digest(statuses)
    annotated = []
    for status in statuses:
        matches = None
        if status.get("reachable") and common is not None:
            matches = status["digest"] == common
        annotated.append({**status, "digest_matches": matches})
    return annotated


def _common_digest(statuses: list[dict]) -> Optional[str]:
    """The digest most reachable replicas share (None: fewer than two, or a tie)."""
    digests = [s["digest"] for s in statuses if s.get("reachable")]
    counts = {d: digests.count(d) for d in digests}
    ranked = sorted(counts.values(), reverse=True)
    if len(digests) > 1 and (len(ranked) == 1 or ranked[0] > ranked[1]):
        return max(counts, key=counts.__getitem__)
    return None


def verdict(statuses: list[dict], *, in_doubt_moment: float = IN_DOUBT_MOMENT) -> dict:
    """``{"healthy", "in_sync", "problems", "epoch"}`` for the members' statuses.

    ``in_sync`` holds when every member answered, none is catching up or
    outside the epoch, and all digests are equal; ``healthy`` when there is no
    problem. ``epoch`` is ``epoch_view``'s (None: no member reports one).
    Problems of the whole cluster (``"member": None``) come first.
    """
    epoch = epoch_view(statuses)
    compared = [s for s in statuses if s.get("reachable") and not s.get("catching_up")
                and not _outside(s, epoch)]
    digests = {s["digest"] for s in compared}
    problems: list[dict] = []
    if epoch is not None and epoch["failover"] and not epoch["has_majority"]:
        problems.append(_no_majority(statuses, epoch))
    for status in statuses:
        problems.extend(member_problems(status, statuses, in_doubt_moment=in_doubt_moment, epoch=epoch))
    if len(digests) > 1:
        problems.extend(_digest_problems(compared))
    order = {status["name"]: index for index, status in enumerate(statuses)}
    problems.sort(key=lambda found: -1 if found["member"] is None else order[found["member"]])
    in_sync = bool(statuses) and len(compared) == len(statuses) and len(digests) == 1
    return {"healthy": bool(statuses) and not problems, "in_sync": in_sync, "problems": problems, "epoch": epoch}


# ----------------------------------------------------------------- epochs
def failover_of(status: dict) -> Optional[dict]:
    """A reachable member's ``status()["failover"]`` (None: unreachable, or a replica without it)."""
    found = status.get("failover") if status.get("reachable") else None
    return found if isinstance(found, dict) else None


def _failing_over(status: dict) -> Optional[dict]:
    """``failover_of``, for a member that runs with failover on (None otherwise)."""
    found = failover_of(status)
    return found if found is not None and found.get("failover") else None


def epoch_number(status: dict) -> Optional[int]:
    """The number of the epoch a reachable member is in (None: it does not say)."""
    found = failover_of(status)
    epoch = found.get("epoch") if found is not None else None
    return int(epoch.get("number", 0)) if isinstance(epoch, dict) else None


def configured(statuses: list[dict]) -> list[str]:
    """The member list the reachable members report (every name asked, when none does)."""
    names = {name for status in statuses if status.get("reachable") for name in status.get("members", ())}
    return sorted(names or {status["name"] for status in statuses})


def epoch_view(statuses: list[dict]) -> Optional[dict]:
    """The latest epoch the reachable members report, JSON-ready, or None when none reports one:

        {"failover": True, "number": 2, "members": [...], "newcomers": [...], "source": "replica1",
         "configured": 5, "majority": 3, "answering": [...], "has_majority": True}

    ``answering``: the configured replicas that answer with failover on (an
    epoch change needs ``majority`` of them, and so do read leases). With
    failover off everywhere, ``failover`` is False and the epoch is 0, the
    whole member list, as in the strict protocol (every member votes on every
    write), and ``has_majority`` says nothing.
    """
    reports = [(status, failover_of(status)) for status in statuses]
    reports = [(status, found) for status, found in reports if found is not None and "epoch" in found]
    if not reports:
        return None
    names = configured(statuses)
    needed = majority(names)
    on = [(status, found) for status, found in reports if found.get("failover")]
    if not on:
        return {"failover": False, "number": 0, "members": names, "newcomers": [], "source": None,
                "configured": len(names), "majority": needed, "answering": sorted(s["name"] for s, _ in reports),
                "has_majority": True}
    latest = max((found["epoch"] for _, found in on), key=lambda epoch: int(epoch.get("number", 0)))
    answering = sorted(status["name"] for status, found in on
                       if status["name"] in names and found.get("role") != REMOVED_ROLE)
    return {"failover": True, "number": int(latest.get("number", 0)), "members": sorted(latest.get("members", ())),
            "newcomers": sorted(latest.get("newcomers") or ()), "source": latest.get("source"),
            "configured": len(names), "majority": needed, "answering": answering,
            "has_majority": len(answering) >= needed}


def _outside(status: dict, epoch: Optional[dict]) -> bool:
    """A member with failover on that is not a member of its epoch, or is behind ``epoch``."""
    found = _failing_over(status)
    if found is None:
        return False
    if found.get("role") == OUTSIDE_ROLE:
        return True
    number = epoch_number(status)
    return epoch is not None and number is not None and number < epoch["number"]


def _no_majority(statuses: list[dict], epoch: dict) -> dict:
    answering, total, needed = epoch["answering"], epoch["configured"], epoch["majority"]
    down = [s["name"] for s in statuses if not s.get("reachable") and s["name"] in configured(statuses)]
    who = f"only {', '.join(answering)} answer{'s' if len(answering) == 1 else ''}, " if answering else "none answers, "
    detail = (f"{who}{len(answering)} of the {total} replicas: writes stop, and reads once the leases run out, "
              f"until {needed} do")
    hint = (f"start the replicas that are down ('python run_server.py --name NAME'): {', '.join(down)}"
            if down else None)
    return problem(None, NO_MAJORITY, detail, hint)


def _epoch_problem(name: str, status: dict, found: dict, epoch: Optional[dict]) -> Optional[dict]:
    """With failover on: removed, catching up as a newcomer, outside (or behind) the latest epoch, or
    a member without a read lease."""
    own = found.get("epoch") or {}
    number = int(own.get("number", 0))
    role = found.get("role")
    if role == REMOVED_ROLE:
        return problem(name, REMOVED, "it runs, but is no longer in the member list",
                       "stop it; started again, it sets its old data aside and rejoins")
    if status.get("catching_up") or role == COPYING_ROLE:
        source = own.get("source")
        copying = (f"a newcomer to epoch {number}: copying its data from {source}"
                   if source and name in (own.get("newcomers") or ()) else
                   f"copying the data of epoch {number} from a member")
        return problem(name, CATCHING_UP, copying, "it serves once it has caught up: ask again in a moment")
    if epoch is not None and number < epoch["number"]:
        return problem(name, OUTSIDE_EPOCH, f"still in epoch {number}; the others are in epoch "
                       f"{epoch['number']}: it refuses reads until it rejoins", _REJOINS)
    if role == OUTSIDE_ROLE:
        members = ", ".join(sorted(own.get("members", ())))
        return problem(name, OUTSIDE_EPOCH, f"not a member of epoch {number} ({members}): it may have missed "
                       "writes, so it refuses reads", _REJOINS)
    lease = found.get("lease") or {}
    if lease.get("valid") is False:
        seconds = float(lease.get("seconds") or 0)
        return problem(name, NO_LEASE, f"no majority of the replicas renewed it within {seconds:g} s: it refuses "
                       "reads", "it renews it by itself while a majority answers it: ask again in a moment")
    return None


def member_problems(status: dict, statuses: list[dict], *, in_doubt_moment: float = IN_DOUBT_MOMENT,
                    epoch: Optional[dict] = None) -> list[dict]:
    """What is wrong with one member (digests aside: they need the others). ``epoch``:
    ``epoch_view(statuses)``, worked out here when not given."""
    name = status["name"]
    start = f"start it with 'python run_server.py --name {name}'"
    if not status.get("reachable"):
        return [problem(name, UNREACHABLE, _why_unreachable(status), _unreachable_hint(status, start))]
    found = _failing_over(status)
    if found is not None:
        outside = _epoch_problem(name, status, found, epoch_view(statuses) if epoch is None else epoch)
        if outside is not None:
            return [outside]
    if status.get("catching_up"):
        return [problem(name, CATCHING_UP, "copying the committed data from a peer",
                        "it serves once it has caught up: ask again in a moment")]
    found = []
    damage = _unrepaired_damage(status)
    if damage is not None:
        found.append(damage)
    elif not status.get("serving", True):
        found.append(problem(name, NOT_SERVING, str(status.get("refusal") or "it refuses requests")))
    stuck = _stuck(status, in_doubt_moment)
    if stuck:
        found.append(_in_doubt_problem(name, stuck, statuses, in_doubt_moment))
    return found


def _unrepaired_damage(status: dict) -> Optional[dict]:
    """The latest damage a member found and has not repaired, as a problem."""
    history = (status.get("integrity") or {}).get("damage") or []
    if not history or history[0].get("repaired_at") is not None:
        return None
    latest = history[0]
    what = latest.get("damage") or {}
    hint = ("it re-syncs the keys that differ from the majority by itself once no write is in flight; "
            "if it stays, restart it: its start-up check sets the files aside and rebuilds them"
            if latest.get("repair", "").startswith("anti-entropy") else latest.get("repair"))
    return problem(status["name"], DATA_DAMAGED, f"{what.get('what')} ({what.get('where')}), found by the "
                   f"{latest.get('found_by')}", hint)


#: words of a cause that mean the replica took the connection (it runs) but did not answer in time
_NO_ANSWER_WORDS = ("timeout", "timed out")


def _unreachable_hint(status: dict, start: str) -> str:
    """Start it, or, when it runs but did not answer in time (paused, overloaded), resume it or wait."""
    if any(word in _why_unreachable(status).lower() for word in _NO_ANSWER_WORDS):
        return "it runs but did not answer in time: it may be paused (SIGSTOP, a debugger) or overloaded; " \
               "resume it (kill -CONT) or wait"
    return f"is it running? {start}"


def _why_unreachable(status: dict) -> str:
    return status.get("cause") or status.get("error") or "no answer"


def _stuck(status: dict, moment: float) -> dict[str, Optional[float]]:
    """In-doubt txid -> age (None: the replica does not say), for those older than ``moment``."""
    ages = status.get("in_doubt_ages")
    if ages is None:  # a replica that does not give ages: every in-doubt transaction counts
        ages = {txid: None for txid in status.get("in_doubt", ())}
    return {txid: age for txid, age in sorted(ages.items()) if age is None or age > moment}


def _in_doubt_problem(name: str, stuck: dict, statuses: list[dict], moment: float) -> dict:
    named = ", ".join(txid if age is None else f"{txid} ({age:.1f} s)"
                      for txid, age in list(stuck.items())[:_NAMED_TXIDS])
    more = f" and {len(stuck) - _NAMED_TXIDS} more" if len(stuck) > _NAMED_TXIDS else ""
    count = f"{len(stuck)} transaction{'s' if len(stuck) != 1 else ''}"
    coordinators = sorted({txids.coordinator_of(txid) for txid in stuck})
    down = [c for c in coordinators if not any(s["name"] == c and s.get("reachable") for s in statuses)]
    if down:
        hint = "their coordinator is down: start " + " and ".join(
            f"{c} ('python run_server.py --name {c}')" for c in down)
    else:
        hint = f"waiting for the decision of {', '.join(coordinators)}: ask again in a moment, then read its log"
    return problem(name, IN_DOUBT, f"{count} prepared and undecided for more than {moment:g} s: {named}{more}", hint)


def _digest_problems(compared: list[dict]) -> list[dict]:
    common = _common_digest(compared)
    hint = "ask again: a write in flight can make digests differ for a moment; if it stays, read that replica's log"
    if common is None:
        held = ", ".join(f"{s['name']} {s['digest'][:12]}" for s in compared)
        return [problem(s["name"], DIGEST_DIFFERS, f"no digest is held by a majority ({held})", hint)
                for s in compared]
    holders = sum(1 for s in compared if s["digest"] == common)
    return [problem(s["name"], DIGEST_DIFFERS, f"its digest {s['digest'][:12]} differs from {common[:12]}, "
                    f"held by {holders} of {len(compared)} members", hint)
            for s in compared if s["digest"] != common]


def problem(member: Optional[str], kind: str, detail: str, hint: Optional[str] = None) -> dict:
    """One problem of one member (None: of the whole cluster), JSON-ready."""
    found: dict[str, Any] = {"member": member, "problem": kind, "detail": detail}
    if hint:
        found["hint"] = hint
    return found


def problem_sentence(found: dict) -> str:
    """'replica4 is unreachable (connection refused); is it running? ...', or for the
    whole cluster 'no majority (...); start ...'."""
    if found["member"] is None:
        sentence = f"{found['problem']} ({found['detail']})"
    else:
        sentence = f"{found['member']} {PHRASES.get(found['problem'], found['problem'])} ({found['detail']})"
    return f"{sentence}; {found['hint']}" if found.get("hint") else sentence


def summary(statuses: list[dict], found: dict) -> str:
    """The verdict in one line: 'healthy: ...' or 'unhealthy: ...', naming the members and why
    (after what is wrong with the whole cluster, if anything)."""
    count = len(statuses)
    if found["healthy"]:
        return f"healthy: all {count} member{'s' if count != 1 else ''} reachable, serving and in sync"
    kinds: dict[str, list[str]] = {}
    cluster = []
    for each in found["problems"]:
        if each["member"] is None:
            cluster.append(_cluster_phrase(each, found.get("epoch")))
        else:
            kinds.setdefault(each["member"], []).append(each["problem"])
    if not kinds and not cluster:
        return "unhealthy: no member answered"
    parts = list(cluster)
    if kinds:
        named = ", ".join(f"{member} ({', '.join(dict.fromkeys(problems))})" for member, problems in kinds.items())
        verb = "has a problem" if len(kinds) == 1 else "have problems"
        parts.append(f"{len(kinds)} of {count} member{'s' if count != 1 else ''} {verb}: {named}")
    return "unhealthy: " + "; ".join(parts)


def _cluster_phrase(found: dict, epoch: Optional[dict]) -> str:
    """'no majority (2 of 5 replicas answer, 3 needed)' for the one-line verdict."""
    if found["problem"] == NO_MAJORITY and epoch is not None:
        return (f"no majority ({len(epoch['answering'])} of {epoch['configured']} replicas answer, "
                f"{epoch['majority']} needed)")
    return found["problem"]


def member_health(statuses: list[dict], found: dict) -> list[dict]:
    """One entry per member for ``health``: its address, healthy or not, how long it took to
    answer, and (from a replica that reports them) its ``failover`` fields as it gave them."""
    entries = []
    for status in statuses:
        mine = [p for p in found["problems"] if p["member"] == status["name"]]
        entry = {"name": status["name"], "uri": status.get("uri"), "healthy": not mine,
                 "reachable": bool(status.get("reachable")), "problems": mine}
        if "latency_ms" in status:
            entry["took_ms"] = status["latency_ms"]
        if failover_of(status) is not None:
            entry["failover"] = status["failover"]
        entries.append(entry)
    return entries


def role_of(status: dict, epoch: Optional[dict] = None) -> str:
    """What a member is doing now, for ``member list`` (``epoch``: ``epoch_view``'s, to tell a
    member of an epoch the others have left behind)."""
    if not status.get("reachable"):
        return UNREACHABLE if status.get("registered", True) else "not registered"
    found = _failing_over(status)
    if found is not None and found.get("role") == REMOVED_ROLE:
        return REMOVED
    if status.get("catching_up") or (found is not None and found.get("role") == COPYING_ROLE):
        return CATCHING_UP
    if _outside(status, epoch):
        return OUTSIDE_EPOCH
    if not status.get("serving", True):
        return f"{NOT_SERVING}: {status.get('refusal')}"
    return "member"


def member_list(statuses: list[dict], *, in_use: Optional[str] = None) -> list[dict]:
    """One entry per member for ``member list``: name, URI, reachability, role."""
    entries = []
    epoch = epoch_view(statuses)
    for status in statuses:
        entry = {"name": status["name"], "uri": status.get("uri"), "registered": status.get("registered", True),
                 "reachable": bool(status.get("reachable")), "role": role_of(status, epoch),
                 "in_use": status["name"] == in_use}
        if not status.get("reachable"):
            entry["error"] = _why_unreachable(status)
        entries.append(entry)
    return entries
