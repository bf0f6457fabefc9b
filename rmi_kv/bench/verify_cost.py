"""What the background verification pass costs writes while it runs.

``python -m rmi_kv.bench.verify_cost`` starts two clusters holding the same
number of keys, one with ``--verify-every 1`` and one with the pass off,
and runs the benchmark (PUT only) against each in turn, in interleaved
rounds; the cluster not measured is stopped (SIGSTOP) meanwhile. Each run
begins 1.2 s after the last write, so that a pass has just begun (it starts
once a replica has been idle for a second) and runs, paced, through the run.
It prints PUT/s and p50 of each run, and the longest pass the logs report.
"""
from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

from rmi_kv.server.cluster import LocalCluster

#: keys per transaction while filling
FILL_CHUNK = 1000
#: how long each cluster idles before its run
IDLE_BEFORE_RUN = 1.2


def fill(cluster: LocalCluster, keys: int) -> None:
    with cluster.client() as kv:
        for first in range(0, keys, FILL_CHUNK):
            kv.transaction({f"fill-{number:07d}": "x" * 100 for number in range(first, min(keys, first + FILL_CHUNK))})


def pause(cluster: LocalCluster, paused: bool) -> None:
    for child in [cluster.nameserver, *cluster.replicas.values()]:
        if child is not None:
            child.signal(signal.SIGSTOP if paused else signal.SIGCONT)


def longest_pass(cluster: LocalCluster) -> float:
    took = [float(seconds) for name in cluster.names
            for seconds in re.findall(r"verified: .*\(([0-9.]+) s\)", (cluster.data_dir / f"{name}.log").read_text())]
    return max(took, default=0.0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rmi_kv.bench.verify_cost", description=__doc__.split("\n\n")[1])
    parser.add_argument("--keys", type=int, default=200_000, help="keys each cluster holds (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default %(default)s)")
    parser.add_argument("--clients", type=int, default=16, help="benchmark clients (default %(default)s)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run (default %(default)s)")
    args = parser.parse_args(argv)
    clusters: dict[str, LocalCluster] = {}
    results: dict[str, list] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="rmi_kv-verify-cost-") as scratch:
        try:
            for label, every in (("off", "0"), ("on", "1")):
                cluster = LocalCluster(5, data_dir=Path(scratch) / label, replica_args=["--verify-every", every])
                clusters[label] = cluster.start()
                fill(cluster, args.keys)
                pause(cluster, True)
            for round_number in range(args.rounds):
                for label, cluster in clusters.items():
                    pause(cluster, False)
                    time.sleep(IDLE_BEFORE_RUN)
                    report = Path(scratch) / f"{label}-{round_number}.json"
                    subprocess.run([sys.executable, "-m", "rmi_kv.bench", "--ns-port", str(cluster.ns_port),
                                    "--sweep", str(args.clients), "--duration", str(args.duration), "--write-ratio",
                                    "1", "--no-preload", "--no-progress", "--json", str(report)],
                                   check=True, capture_output=True)
                    pause(cluster, True)
                    run = json.loads(report.read_text())["runs"][0]
                    results[label].append({"ops_per_s": round(run["ops_per_s"], 1), "p50_ms": run["put"]["p50_ms"]})
                    print(f"round {round_number + 1}, pass {label}: {results[label][-1]['ops_per_s']} PUT/s, "
                          f"p50 {results[label][-1]['p50_ms']:.1f} ms", flush=True)
            ratios = [on["ops_per_s"] / off["ops_per_s"] for on, off in zip(results["on"], results["off"])]
            print(f"with the pass running: {min(ratios):.2f}-{max(ratios):.2f}x the PUT rate without it; "
                  f"longest pass {longest_pass(clusters['on']):.1f} s")
        finally:
            for cluster in clusters.values():
                pause(cluster, False)
                cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
