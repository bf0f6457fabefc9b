"""Whether the cluster is healthy: one verdict over the members' status dicts.

``KeyValueClient.status()`` gives one dict per member: every name the name
server lists and every member a reachable replica reports, reachable or not.
``verdict`` turns them into ``healthy``, ``in_sync`` and a list of problems,
each naming a member, what is wrong and, where known, what to do:

    {"member": "replica4", "problem": "unreachable", "detail": "...", "hint": "..."}

A member is healthy when it answers, serves, is not catching up, holds no
transaction in doubt for longer than ``IN_DOUBT_MOMENT``, and holds the data
the others hold. ``status`` and ``health`` exit with
``ClusterUnhealthy.exit_code`` unless every member is. Everything here is a
pure function over plain dicts, so the rules are tested without a network.
"""
from __future__ import annotations

from typing import Any, Optional

from rmi_kv.config import Timeouts
from rmi_kv.core import txid as txids

#: seconds a transaction may stay PREPARED and undecided at a participant before
#: it counts as a problem: a round in flight is decided within a vote timeout
#: plus a decision timeout (2 s each by default); one more second is slack
IN_DOUBT_MOMENT = Timeouts().vote + Timeouts().decision + 1.0

UNREACHABLE, NOT_SERVING, CATCHING_UP, IN_DOUBT, DIGEST_DIFFERS = (
    "unreachable", "not serving", "catching up", "in doubt", "digest differs")

#: how a sentence says each problem of a member
PHRASES = {UNREACHABLE: "is unreachable", NOT_SERVING: "is not serving", CATCHING_UP: "is catching up",
           IN_DOUBT: "has transactions in doubt", DIGEST_DIFFERS: "holds different data"}

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
    """``{"healthy", "in_sync", "problems"}`` for the members' statuses.

    ``in_sync`` holds when every member answered, none is catching up, and all
    digests are equal; ``healthy`` when no member has a problem.
    """
    compared = [s for s in statuses if s.get("reachable") and not s.get("catching_up")]
    digests = {s["digest"] for s in compared}
    problems: list[dict] = []
    for status in statuses:
        problems.extend(member_problems(status, statuses, in_doubt_moment=in_doubt_moment))
    if len(digests) > 1:
        problems.extend(_digest_problems(compared))
    order = {status["name"]: index for index, status in enumerate(statuses)}
    problems.sort(key=lambda found: order[found["member"]])
    in_sync = bool(statuses) and len(compared) == len(statuses) and len(digests) == 1
    return {"healthy": bool(statuses) and not problems, "in_sync": in_sync, "problems": problems}


def member_problems(status: dict, statuses: list[dict], *, in_doubt_moment: float = IN_DOUBT_MOMENT) -> list[dict]:
    """What is wrong with one member (digests aside: they need the others)."""
    name = status["name"]
    start = f"start it with 'python run_server.py --name {name}'"
    if not status.get("reachable"):
        return [problem(name, UNREACHABLE, _why_unreachable(status), f"is it running? {start}")]
    if status.get("catching_up"):
        return [problem(name, CATCHING_UP, "copying the committed data from a peer",
                        "it serves once it has caught up: ask again in a moment")]
    found = []
    if not status.get("serving", True):
        found.append(problem(name, NOT_SERVING, str(status.get("refusal") or "it refuses requests")))
    stuck = _stuck(status, in_doubt_moment)
    if stuck:
        found.append(_in_doubt_problem(name, stuck, statuses, in_doubt_moment))
    return found


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


def problem(member: str, kind: str, detail: str, hint: Optional[str] = None) -> dict:
    """One problem of one member, JSON-ready."""
    found: dict[str, Any] = {"member": member, "problem": kind, "detail": detail}
    if hint:
        found["hint"] = hint
    return found


def problem_sentence(found: dict) -> str:
    """'replica4 is unreachable (connection refused); is it running? ...'"""
    sentence = f"{found['member']} {PHRASES.get(found['problem'], found['problem'])} ({found['detail']})"
    return f"{sentence}; {found['hint']}" if found.get("hint") else sentence


def summary(statuses: list[dict], found: dict) -> str:
    """The verdict in one line: 'healthy: ...' or 'unhealthy: ...', naming the members and why."""
    count = len(statuses)
    if found["healthy"]:
        return f"healthy: all {count} member{'s' if count != 1 else ''} reachable, serving and in sync"
    kinds: dict[str, list[str]] = {}
    for each in found["problems"]:
        kinds.setdefault(each["member"], []).append(each["problem"])
    if not kinds:
        return "unhealthy: no member answered"
    named = ", ".join(f"{member} ({', '.join(dict.fromkeys(problems))})" for member, problems in kinds.items())
    verb = "has a problem" if len(kinds) == 1 else "have problems"
    return f"unhealthy: {len(kinds)} of {count} member{'s' if count != 1 else ''} {verb}: {named}"


def member_health(statuses: list[dict], found: dict) -> list[dict]:
    """One entry per member for ``health``: its address, healthy or not, and how long it took to answer."""
    entries = []
    for status in statuses:
        mine = [p for p in found["problems"] if p["member"] == status["name"]]
        entry = {"name": status["name"], "uri": status.get("uri"), "healthy": not mine,
                 "reachable": bool(status.get("reachable")), "problems": mine}
        if "latency_ms" in status:
            entry["took_ms"] = status["latency_ms"]
        entries.append(entry)
    return entries


def role_of(status: dict) -> str:
    """What a member is doing now, for ``member list``."""
    if not status.get("reachable"):
        return UNREACHABLE if status.get("registered", True) else "not registered"
    if status.get("catching_up"):
        return CATCHING_UP
    if not status.get("serving", True):
        return f"{NOT_SERVING}: {status.get('refusal')}"
    return "member"


def member_list(statuses: list[dict], *, in_use: Optional[str] = None) -> list[dict]:
    """One entry per member for ``member list``: name, URI, reachability, role."""
    entries = []
    for status in statuses:
        entry = {"name": status["name"], "uri": status.get("uri"), "registered": status.get("registered", True),
                 "reachable": bool(status.get("reachable")), "role": role_of(status),
                 "in_use": status["name"] == in_use}
        if not status.get("reachable"):
            entry["error"] = _why_unreachable(status)
        entries.append(entry)
    return entries
