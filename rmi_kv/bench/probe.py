"""What the benchmark reads from the cluster around a run: status counters,
the digest check, and the CPU time of the cluster's processes."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from rmi_kv.wire.client import KeyValueClient

COUNTERS = ("coordinated_committed", "coordinated_aborted", "committed", "aborted")
#: counters a replica may report in status(); used when present (see docs/performance.md)
OPTIONAL_COUNTERS = ("coordinated_retries", "forced_commits", "forced_operations", "protocol_calls", "protocol_messages")


@dataclass
class DigestCheck:
    """Every replica's digest after a run, and whether they are all equal."""

    digests: dict = field(default_factory=dict)
    equal: bool = False
    unreachable: list = field(default_factory=list)
    #: seconds waited for in-flight transactions to settle before comparing
    settle_s: float = 0.0
    note: str = ""

    @classmethod
    def of(cls, digests: dict, unreachable: list, settle_s: float = 0.0) -> "DigestCheck":
        """The check of these digests: equal when every member answered with the same one."""
        equal = bool(digests) and not unreachable and len(set(digests.values())) == 1
        return cls(digests, equal, sorted(unreachable), settle_s)

    def as_dict(self) -> dict:
        return {"digests": self.digests, "digests_equal": self.equal, "unreachable": self.unreachable,
                "settle_s": round(self.settle_s, 3), "note": self.note}


def counters(statuses: list[dict]) -> dict:
    """The sum over reachable replicas of each counter in COUNTERS, and of each
    in OPTIONAL_COUNTERS that every reachable replica reports."""
    reachable = [status for status in statuses if status.get("reachable")]
    names = list(COUNTERS) + [name for name in OPTIONAL_COUNTERS
                              if reachable and all(name in status for status in reachable)]
    return {name: sum(int(status.get(name, 0) or 0) for status in reachable) for name in names}


def _settled(statuses: list[dict]) -> bool:
    return all(status.get("reachable") and not status.get("in_doubt") and not status.get("unacknowledged_commits")
               for status in statuses)


def check_digests(client: KeyValueClient, settle_timeout: float = 10.0) -> DigestCheck:
    """Compare every replica's digest, once nothing is in doubt or unacknowledged
    (or ``settle_timeout`` has passed): a run whose replicas differ has failed."""
    started = time.monotonic()
    while True:
        statuses = client.status()
        if _settled(statuses) or time.monotonic() - started > settle_timeout:
            break
        time.sleep(0.05)
    check = DigestCheck.of({s["name"]: s["digest"] for s in statuses if s.get("reachable")},
                           [s["name"] for s in statuses if not s.get("reachable")], time.monotonic() - started)
    if not _settled(statuses):
        check.note = f"transactions still in doubt or unacknowledged after {settle_timeout:g} s"
    return check


def cpu_seconds(pid: int) -> Optional[float]:
    """User + system CPU seconds of process ``pid`` (Linux /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def cpu_snapshot(pids: dict[str, int]) -> dict[str, Optional[float]]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def cpu_delta(before: dict, after: dict) -> dict[str, float]:
    return {name: round(after[name] - before[name], 3) for name in before
            if before.get(name) is not None and after.get(name) is not None}


def machine_cpu_seconds() -> Optional[float]:
    """Busy CPU seconds of the whole machine since boot (all processes), or None."""
    ticks = _cpu_ticks()
    return None if ticks is None else ticks[0] / os.sysconf("SC_CLK_TCK")


def _cpu_ticks() -> Optional[tuple[int, int]]:
    """(busy, total) jiffies of the whole machine since boot (Linux /proc/stat), or None."""
    try:
        fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def machine_busy(seconds: float = 0.5) -> Optional[float]:
    """Fraction of the machine's CPU busy over the next ``seconds`` (before we add load)."""
    before = _cpu_ticks()
    time.sleep(seconds)
    after = _cpu_ticks()
    if before is None or after is None or after[1] == before[1]:
        return None
    return round((after[0] - before[0]) / (after[1] - before[1]), 3)
