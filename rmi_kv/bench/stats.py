"""Latency histograms that merge across workers (threads or processes).

Buckets are logarithmic, 1% wide, so a percentile read from a histogram is
within 1% of the exact value whatever the range (microseconds to minutes),
and a worker ships a small dict of counts instead of every sample.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

#: bucket i holds values in [GROWTH**i, GROWTH**(i+1)) microseconds
GROWTH = 1.01
_LOG_GROWTH = math.log(GROWTH)


@dataclass
class LatencyHistogram:
    """Counts of latencies in log buckets, plus the exact count, sum, min and max."""

    buckets: dict = field(default_factory=dict)
    count: int = 0
    total_s: float = 0.0
    min_s: float = math.inf
    max_s: float = 0.0

    def record(self, seconds: float) -> None:
        """Add one latency, in seconds."""
        micros = seconds * 1e6
        index = int(math.log(micros) / _LOG_GROWTH) if micros > 1.0 else 0
        self.buckets[index] = self.buckets.get(index, 0) + 1
        self.count += 1
        self.total_s += seconds
        if seconds < self.min_s:
            self.min_s = seconds
        if seconds > self.max_s:
            self.max_s = seconds

    def merge(self, other: "LatencyHistogram") -> "LatencyHistogram":
        """Add ``other``'s counts to this histogram (in place); returns self."""
        for index, count in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + count
        self.count += other.count
        self.total_s += other.total_s
        self.min_s = min(self.min_s, other.min_s)
        self.max_s = max(self.max_s, other.max_s)
        return self

    def percentile(self, fraction: float) -> Optional[float]:
        """The latency (seconds) below which ``fraction`` of the samples fall (nearest rank)."""
        if not self.count:
            return None
        rank = max(1, math.ceil(fraction * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                middle = GROWTH ** (index + 0.5) / 1e6
                return min(max(middle, self.min_s), self.max_s)
        return self.max_s  # pragma: no cover - ranks never exceed the count

    def mean(self) -> Optional[float]:
        return self.total_s / self.count if self.count else None

    def summary_ms(self) -> dict:
        """count, mean, p50, p95, p99, min, max in milliseconds (None when empty)."""
        def ms(value: Optional[float]) -> Optional[float]:
            return None if value is None else round(value * 1000.0, 4)

        return {"count": self.count, "mean_ms": ms(self.mean()),
                "p50_ms": ms(self.percentile(0.50)), "p95_ms": ms(self.percentile(0.95)),
                "p99_ms": ms(self.percentile(0.99)),
                "min_ms": ms(self.min_s if self.count else None), "max_ms": ms(self.max_s if self.count else None)}

    def to_dict(self) -> dict:
        """A plain dict (for a multiprocessing queue or JSON)."""
        return {"buckets": dict(self.buckets), "count": self.count, "total_s": self.total_s,
                "min_s": self.min_s if self.count else None, "max_s": self.max_s}

    @classmethod
    def from_dict(cls, data: dict) -> "LatencyHistogram":
        histogram = cls(dict(data["buckets"]), data["count"], data["total_s"],
                        math.inf if data["min_s"] is None else data["min_s"], data["max_s"])
        return histogram


def exact_percentile(samples: list[float], fraction: float) -> Optional[float]:
    """Nearest-rank percentile of a short list of samples (for the baselines)."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]
