"""How much memory a replica holding many keys uses, and how fast it starts.

``python -m rmi_kv.bench.memory --keys 1000000`` fills one replica's data
directory with that many committed keys, starts a name server and that
replica on it (the start includes recovery: the replica reads its log), and
reports the time to ready and the resident memory after reads and writes.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

from rich.console import Console
from rich.table import Table

from rmi_kv.server.cluster import LocalCluster
from rmi_kv.storage.sqlite import Storage

#: keys written per forced write while filling
FILL_CHUNK = 50_000
#: the txid recorded as the last writer of every filled key
FILL_TXID = "fill:00000000:1:1"


def fill(data_dir: Path, keys: int, value_size: int) -> float:
    """Store ``keys`` committed keys in a replica's storage; returns the seconds it took."""
    started = time.monotonic()
    storage = Storage(data_dir / "replica1" / "rmi_kv.sqlite3")
    try:
        value = "v" * value_size
        for first in range(0, keys, FILL_CHUNK):
            storage.install_entries((f"key{number}", value, 1, FILL_TXID)
                                    for number in range(first, min(keys, first + FILL_CHUNK)))
    finally:
        storage.close()
    return time.monotonic() - started


def resident_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for process {pid}")


def measure(data_dir: Path, keys: int, reads: int, writes: int, value_size: int) -> dict:
    """Start the filled replica, then read and write through it; every figure."""
    cluster = LocalCluster(1, data_dir=data_dir, log_level="WARNING")
    cluster.start_ns()
    try:
        started = time.monotonic()
        child = cluster.start_replica("replica1")
        start_s = time.monotonic() - started
        figures = {"keys": keys, "start_s": round(start_s, 3), "rss_mb_at_ready": round(resident_mb(child.pid), 1)}
        rng = random.Random(1)
        with cluster.client("replica1") as kv:
            status = next(s for s in kv.status() if s["name"] == "replica1")
            for _ in range(reads):
                kv.get(f"key{rng.randrange(keys)}")
            figures["rss_mb_after_reads"] = round(resident_mb(child.pid), 1)
            for number in range(writes):
                kv.put(f"key{rng.randrange(keys)}", "w" * value_size)
            figures["rss_mb_after_writes"] = round(resident_mb(child.pid), 1)
        figures.update({"reads": reads, "writes": writes, "keys_reported": status["keys"]})
        return figures
    finally:
        cluster.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rmi_kv.bench.memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys to store (default %(default)s)")
    parser.add_argument("--value-size", type=int, default=100, help="bytes per value (default %(default)s)")
    parser.add_argument("--reads", type=int, default=2000, help="random reads after the start (default %(default)s)")
    parser.add_argument("--writes", type=int, default=200, help="writes after the reads (default %(default)s)")
    parser.add_argument("--data-dir", help="where to put the data (default: a temporary directory)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.keys < 1 or not 1 <= args.value_size <= 1024 * 1024 or args.reads < 0 or args.writes < 0:
        print("error: --keys must be at least 1, --value-size 1 to 1048576, --reads/--writes not negative",
              file=sys.stderr)
        return 2
    console = Console()
    with tempfile.TemporaryDirectory(prefix="rmi_kv-memory-") as scratch:
        data_dir = Path(args.data_dir or scratch)
        with console.status(f"storing {args.keys:,} keys of {args.value_size} bytes ..."):
            fill_s = fill(data_dir, args.keys, args.value_size)
        with console.status("starting a name server and the replica ..."):
            figures = measure(data_dir, args.keys, args.reads, args.writes, args.value_size)
    figures.update({"value_size": args.value_size, "fill_s": round(fill_s, 1)})
    table = Table(title=f"One replica holding {args.keys:,} keys of {args.value_size} bytes")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for label, key, unit in (("start to ready (recovery included)", "start_s", "s"),
                             ("resident memory at ready", "rss_mb_at_ready", "MB"),
                             (f"resident memory after {args.reads:,} reads", "rss_mb_after_reads", "MB"),
                             (f"resident memory after {args.writes:,} writes", "rss_mb_after_writes", "MB")):
        table.add_row(label, f"{figures[key]:,} {unit}")
    console.print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
