"""Transaction ids: ``COORDINATOR:BOOT:COUNTER:STARTED_US``, the one place that knows the format.

- COORDINATOR names the replica that runs the transaction (the one to ask
  for its outcome);
- BOOT (8 hex digits, random per process start) and COUNTER make it unique
  across restarts;
- STARTED_US is when the write started (wall clock, microseconds), kept
  across conflict retries: it orders transactions by age for wait-die.
"""
from __future__ import annotations

import re

PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}:[0-9a-f]{8}:[0-9]{1,19}:[0-9]{1,20}$")
#: how the format reads, for error messages
FORMAT = "COORDINATOR:BOOTID:COUNTER:STARTED"


def make(coordinator: str, boot: str, counter: int, started_us: int) -> str:
    """A txid from its parts."""
    return f"{coordinator}:{boot}:{counter}:{started_us}"


def is_valid(txid: object) -> bool:
    return isinstance(txid, str) and PATTERN.fullmatch(txid) is not None


def coordinator_of(txid: str) -> str:
    """The replica that coordinates ``txid``."""
    return txid.split(":", 1)[0]


def priority(txid: str) -> tuple[int, str]:
    """Order of age between transactions: smaller is older (wait-die).
    ValueError for a txid not of this format."""
    _, _, _, started = txid.split(":")
    return int(started), txid


def started_us(txid: str) -> int:
    """When ``txid`` started (epoch microseconds); 0 for a txid not of this format."""
    try:
        return priority(txid)[0]
    except (ValueError, IndexError):
        return 0
