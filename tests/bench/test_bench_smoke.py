"""Smoke tests of the benchmark: it runs, checks the digests and writes valid
JSON and SVG. Speed is never asserted: the figures are read by people."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from rmi_kv.bench.stats import LatencyHistogram

ROOT = Path(__file__).resolve().parents[2]
#: a no-op row of the results table: clients, "no-op", calls per second
NOOP_ROW = re.compile(r"^\s*\d+\s+no-op\s+[\d,]+\s", re.MULTILINE)


def run_bench(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "rmi_kv.bench", "--no-progress", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          stdin=subprocess.DEVNULL)


def bench_json(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """Run the benchmark with ``args`` and --json; it must succeed. Returns its output and the JSON."""
    out = tmp_path / "bench.json"
    result = run_bench(*args, "--json", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    return result, json.loads(out.read_text())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_one_run_writes_figures_and_settings(tmp_path):
    result, document = bench_json(tmp_path, "--ops", "200", "--clients", "2", "--write-ratio", "0.5", "--keys", "50")
    assert document["digests_equal"] is True and document["exit_code"] == 0
    settings = document["settings"]
    assert settings["clients"] == [2] and settings["ops"] == 200 and settings["write_ratio"] == 0.5
    assert settings["mode"] == "processes" and len(settings["replicas"]) == 5
    assert settings["early_reply"] is False and document["put_floor"] == "put_ms"
    baselines, floor = document["baselines"], document["floor"]
    assert baselines["round_trip_p50_ms"] > 0 and baselines["forced_write_p50_ms"] > 0
    assert baselines["fsync_p50_ms"] > 0
    assert floor["put_ms"] > floor["get_ms"] > 0 and "round trip" in floor["explanation"]
    (run,) = document["runs"]
    assert run["put"]["count"] + run["get"]["count"] + run["aborts"] + run["outcome_unknown"] == 200
    assert run["put"]["count"] > 0 and run["get"]["count"] > 0
    for kind in ("put", "get"):
        figures = run[kind]
        assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"] <= figures["max_ms"]
        assert figures["ops_per_s"] > 0 and figures["p50_over_floor"] > 0
    assert run["digests_equal"] is True and len(set(run["digests"].values())) == 1
    assert run["replica_counters_delta"]["coordinated_committed"] == run["put"]["count"]
    assert run["retries"] is not None and run["errors"] == {}
    assert_noop_figures(run, calls=200)
    assert "Throughput and latency" in result.stdout
    # a mixed run's clients spend their time on PUTs too: no GET ÷ no-op ratio is shown for it
    assert NOOP_ROW.search(result.stdout) and "GET ÷ no-op" not in result.stdout


def assert_noop_figures(run: dict, calls: int) -> None:
    """A run with reads carries the no-op run that followed it: same clients and
    replicas, its calls/s and p50, and GET ops/s over its calls/s."""
    noop = run["noop"]
    assert noop["count"] == calls and noop["failures"] == [] and noop["errors"] == {}
    assert noop["replicas_used"] == run["replicas_used"]
    assert run["noop_ops_per_s"] == noop["ops_per_s"] > 0 and run["noop_p50_ms"] == noop["p50_ms"] > 0
    assert run["get_vs_noop"] == pytest.approx(run["get"]["ops_per_s"] / run["noop_ops_per_s"], rel=0.01, abs=0.002)


def assert_no_noop_figures(run: dict) -> None:
    """A write-only run has no GETs to compare, so no no-op run."""
    assert run["noop"] is None
    assert run["noop_ops_per_s"] is None and run["noop_p50_ms"] is None and run["get_vs_noop"] is None


def test_sweep_with_threads_writes_svg(tmp_path):
    chart = tmp_path / "sweep.svg"
    result, document = bench_json(tmp_path, "--sweep", "1,2", "--ops", "60", "--threads", "--replicas", "3",
                                  "--write-ratio", "1.0", "--chart", str(chart))
    assert [run["clients"] for run in document["runs"]] == [1, 2]
    assert all(run["mode"] == "threads" and run["get"]["count"] == 0 for run in document["runs"])
    for run in document["runs"]:
        assert_no_noop_figures(run)
    assert document["digests_equal"] is True
    assert not NOOP_ROW.search(result.stdout) and "GET ÷ no-op" not in result.stdout
    root = ElementTree.fromstring(chart.read_text())
    assert root.tag.endswith("svg") and root.findall(".//{http://www.w3.org/2000/svg}polyline")
    assert "Throughput against clients" in result.stdout


def test_reads_with_threads_are_followed_by_a_noop_run_per_client_count(tmp_path):
    result, document = bench_json(tmp_path, "--sweep", "1,3", "--ops", "90", "--threads", "--replicas", "3",
                                  "--write-ratio", "0.0", "--keys", "20")
    runs = document["runs"]
    assert [run["clients"] for run in runs] == [1, 3]
    for run in runs:
        assert run["mode"] == "threads" and run["get"]["count"] == 90 and run["put"]["count"] == 0
        assert_noop_figures(run, calls=90)
    assert len(NOOP_ROW.findall(result.stdout)) == 2
    assert "GET ÷ no-op throughput: 1 client" in result.stdout and "3 clients" in result.stdout


def test_the_noop_run_is_short():
    from rmi_kv.bench.runner import NOOP_MAX_DURATION, NOOP_MAX_OPS, Workload, noop_workload, wants_noop

    timed = Workload(30.0, None, 0.0, 100, 10, "k", 1, "threads", 5.0, None)
    assert noop_workload(timed).duration == NOOP_MAX_DURATION and noop_workload(timed).ops is None
    counted = Workload(None, 10 * NOOP_MAX_OPS, 0.5, 100, 10, "k", 1, "processes", 5.0, "replica2")
    assert noop_workload(counted).ops == NOOP_MAX_OPS and noop_workload(counted).duration is None
    assert noop_workload(counted).mode == "processes" and noop_workload(counted).replica == "replica2"
    assert wants_noop(timed) and wants_noop(counted)
    assert not wants_noop(Workload(1.0, None, 1.0, 100, 10, "k", 1, "threads", 5.0, None))


def summary_of(kind: str, count: int, seconds: float, elapsed_s: float):
    """A RunSummary of ``count`` operations of ``kind`` that each took ``seconds``."""
    from rmi_kv.bench.runner import RunSummary

    summary = RunSummary(2, "threads", elapsed_s=elapsed_s)
    for _ in range(count):
        getattr(summary, kind).record(seconds)
    return summary


def test_noop_figures_are_left_out_when_the_noop_run_failed():
    from rmi_kv.bench.report import noop_json

    summary, noop = summary_of("get", 100, 0.001, elapsed_s=2.0), summary_of("ping", 300, 0.0005, elapsed_s=1.0)
    summary.noop = noop
    assert summary.noop_ops_per_s == 300.0 and summary.get_vs_noop == pytest.approx(50.0 / 300.0)
    assert noop_json(summary, {"get_ms": 0.25})["noop_p50_ms"] == pytest.approx(0.5, rel=0.01)
    noop.failures.append("client 1: replica2: gone")
    figures = noop_json(summary, {"get_ms": 0.25})
    assert figures["noop_ops_per_s"] is None and figures["get_vs_noop"] is None
    assert figures["noop"]["failures"] == ["client 1: replica2: gone"]


def test_early_reply_cluster_is_read_against_the_early_reply_floor(tmp_path):
    result, document = bench_json(tmp_path, "--early-reply", "--ops", "40", "--threads", "--replicas", "3",
                                  "--write-ratio", "1.0")
    assert document["settings"]["early_reply"] is True and document["put_floor"] == "put_early_reply_ms"
    (run,) = document["runs"]
    assert run["put"]["count"] == 40 and run["digests_equal"] is True
    assert run["put"]["p50_over_floor"] == pytest.approx(
        run["put"]["p50_ms"] / document["floor"]["put_early_reply_ms"], rel=0.01)
    assert re.search(r"early\s+reply\s+\(PUT\s+floor\s+2\s+RT", result.stdout)  # the header, maybe wrapped


def test_usage_errors_exit_2():
    assert run_bench("--early-reply", "--ns-port", str(free_port())).returncode == 2
    assert run_bench("--write-ratio", "1.5").returncode == 2
    assert run_bench("--sweep", "1,x").returncode == 2
    assert run_bench("--duration", "1", "--ops", "5").returncode == 2
    assert run_bench("--chart", "out.png").returncode == 2


def test_no_cluster_exits_4():
    result = run_bench("--ns-port", str(free_port()), "--ops", "10")
    assert result.returncode == 4
    assert "name server" in result.stderr and "Traceback" not in result.stderr


def test_histogram_percentiles_merge_within_one_percent():
    first, second = LatencyHistogram(), LatencyHistogram()
    for micros in range(1, 1001):
        (first if micros % 2 else second).record(micros / 1e6)
    merged = LatencyHistogram().merge(first).merge(second)
    assert merged.count == 1000
    for fraction, exact in ((0.5, 500e-6), (0.99, 990e-6)):
        assert abs(merged.percentile(fraction) - exact) / exact < 0.01
    assert LatencyHistogram.from_dict(merged.to_dict()).percentile(0.5) == merged.percentile(0.5)


class _FakeStatusClient:
    """Stands in for KeyValueClient.status(): replicas with the digests given."""

    def __init__(self, digests: dict) -> None:
        self.digests = digests

    def status(self) -> list[dict]:
        return [{"name": name, "reachable": digest is not None, "digest": digest, "in_doubt": [],
                 "unacknowledged_commits": []} for name, digest in self.digests.items()]


def test_replicas_that_differ_fail_the_run_with_exit_1():
    from rmi_kv.bench import probe
    from rmi_kv.bench.cli import _exit_code
    from rmi_kv.bench.runner import RunSummary

    same, differ = RunSummary(1, "threads"), RunSummary(4, "threads")
    same.digests = probe.check_digests(_FakeStatusClient({"replica1": "aa", "replica2": "aa"}))
    differ.digests = probe.check_digests(_FakeStatusClient({"replica1": "aa", "replica2": "bb"}))
    assert same.digests.equal and not differ.digests.equal
    assert _exit_code([same]) == 0 and _exit_code([same, differ]) == 1
    gone = RunSummary(2, "threads")
    gone.digests = probe.check_digests(_FakeStatusClient({"replica1": "aa", "replica2": None}), settle_timeout=0.0)
    assert gone.digests.unreachable == ["replica2"] and _exit_code([same, gone]) == 4


def test_workers_that_cannot_connect_call_the_run_off_at_once():
    import time

    from rmi_kv.bench.workload import Observer, WorkerSpec, run_processes, run_threads

    port = free_port()
    specs = [WorkerSpec(index, "127.0.0.1", port, "replica1", 2.0, 10, None, 0.5, 10, 10, "k", 1)
             for index in range(3)]
    for runner in (run_threads, run_processes):
        started = time.monotonic()
        results = runner(specs, Observer())
        assert time.monotonic() - started < 20
        assert len(results) == 3 and all(result.failure for result in results)
        assert any(result.unavailable for result in results)


def test_the_memory_tool_fills_a_replica_starts_it_and_reports(tmp_path):
    out = tmp_path / "memory.json"
    result = subprocess.run([sys.executable, "-m", "rmi_kv.bench.memory", "--keys", "3000", "--reads", "50",
                             "--writes", "5", "--data-dir", str(tmp_path / "data"), "--json", str(out)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(out.read_text())
    assert figures["keys_reported"] == 3000 and (figures["reads"], figures["writes"]) == (50, 5)
    assert figures["start_s"] > 0
    assert 0 < figures["rss_mb_at_ready"] and 0 < figures["rss_mb_after_writes"]
    assert "resident memory after 50 reads" in result.stdout
    assert subprocess.run([sys.executable, "-m", "rmi_kv.bench.memory", "--keys", "0"], capture_output=True,
                          timeout=60, cwd=ROOT).returncode == 2


def test_reference_runs_the_same_clients_on_a_bare_two_phase_commit(tmp_path):
    result, document = bench_json(tmp_path, "--reference", "--ops", "60", "--clients", "2", "--replicas", "3",
                                  "--threads", "--write-ratio", "0.5", "--keys", "20")
    assert document["settings"]["reference"] is True
    (run,) = document["runs"]
    reference = run["reference"]
    assert reference["put"]["count"] + reference["get"]["count"] == 60 and reference["failures"] == []
    assert reference["put"]["count"] > 0 and reference["get"]["count"] > 0
    assert set(reference["replicas_used"]) == {"reference1", "reference2"}
    assert reference["digests_equal"] is True and len(reference["digests"]) == 3
    assert reference["cluster_ms_per_op"] > 0
    for kind in ("put", "get"):
        assert run[f"{kind}_vs_reference"] == pytest.approx(
            run[kind]["ops_per_s"] / reference[kind]["ops_per_s"], rel=0.01, abs=0.002)
    assert re.search(r"^\s*2\s+bare PUT\s+[\d,]+\s", result.stdout, re.MULTILINE)
    assert "rmi_kv ÷ bare 2PC throughput" in result.stdout


def test_reference_ratios_are_left_out_when_the_reference_run_failed():
    from rmi_kv.bench.report import reference_json

    summary, reference = summary_of("put", 50, 0.01, elapsed_s=1.0), summary_of("put", 200, 0.005, elapsed_s=1.0)
    assert summary.vs_reference("put") is None
    summary.reference = reference
    assert summary.vs_reference("put") == pytest.approx(0.25) and summary.vs_reference("get") is None
    reference.failures.append("client 0: reference1: gone")
    figures = reference_json(summary, {"put_ms": 2.0, "get_ms": 0.3})
    assert figures["put_vs_reference"] is None and figures["reference"]["failures"] == ["client 0: reference1: gone"]


def test_reference_clients_take_the_places_of_the_replicas():
    from types import SimpleNamespace

    from rmi_kv.bench.runner import Workload, reference_specs_for

    cluster = SimpleNamespace(names=["reference1", "reference2", "reference3"],
                              uris={f"reference{n}": f"PYRO:reference@127.0.0.1:{9000 + n}" for n in (1, 2, 3)})
    spread = Workload(None, 40, 0.5, 100, 10, "k", 1, "threads", 5.0, None)
    specs = reference_specs_for(spread, 4, cluster)
    assert [spec.replica for spec in specs] == ["reference1", "reference2", "reference3", "reference1"]
    assert [spec.reference_uri for spec in specs] == [cluster.uris[spec.replica] for spec in specs]
    assert sum(spec.ops for spec in specs) == 40
    pinned = Workload(None, 40, 0.5, 100, 10, "k", 1, "threads", 5.0, "replica4")
    assert {spec.reference_uri for spec in reference_specs_for(pinned, 3, cluster)} == {cluster.uris["reference1"]}
