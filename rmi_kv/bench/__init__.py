"""The rmi_kv benchmark: ``python -m rmi_kv.bench --help``.

Starts a local cluster (or uses a running one), measures the floors (a no-op
round trip and a forced write), runs clients, and reports throughput,
latency percentiles, aborts and retries as ratios to those floors; a run
whose replicas end with different digests fails.
"""
from .cli import main

__all__ = ["main"]
