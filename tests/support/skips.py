"""Skipping the multi-host tests where the system cannot run them, always saying why."""
from __future__ import annotations

#: every reason given in this run, printed again at the end of the run (see tests/multihost/conftest.py)
REASONS: list[str] = []


def skip_reason(reason: str) -> str:
    """Remember ``reason`` for the run's summary (shown even without -ra); use as pytest.skip(skip_reason(...))."""
    if reason not in REASONS:
        REASONS.append(reason)
    return f"multi-host test skipped: {reason}"
