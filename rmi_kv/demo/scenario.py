"""What every step of the walkthrough works with: the cluster's size, the course keys, the check marks,
and how a step's outcome is kept for the summary."""
from __future__ import annotations

from dataclasses import dataclass, field

#: how many replicas the embedded cluster runs
REPLICAS = 5
#: the options the embedded cluster's replicas start with: the strict protocol of the textbook (every member
#: votes on every write), which the crash steps show; the failover steps restart them with FAILOVER_ON
STRICT = ("--failover", "off")
FAILOVER_ON = ("--failover", "on")
#: the number of the last step, the summary (after a failed step only it still runs)
SUMMARY = 10
#: keys of the course scenario (steps 2 and 3)
COURSE_KEYS = [f"course:{index}" for index in range(10)]
#: what the five PUTs of step 3 write, one per replica
FRUITS = ["apple", "banana", "cherry", "damson", "elderberry"]
CHECK_OK, CHECK_FAILED = "✔", "✘"


@dataclass
class StepResult:
    """One step's outcome: its checks (ok, text), how long it took, and why it was skipped."""

    number: int
    title: str
    shown: str
    status: str = "not run"  # passed | failed | skipped | not run
    checks: list = field(default_factory=list)  # (ok, text)
    seconds: float = 0.0
    note: str = ""

    @property
    def failures(self) -> list[str]:
        """The texts of the checks that failed."""
        return [text for ok, text in self.checks if not ok]


class StepFailed(Exception):
    """A step cannot go on (its reason is the failed check)."""
