"""The side-by-side tool: two clusters from two checkouts, one workload on both
at once, the ratio of each round. Speed is never asserted: only that both
sides were measured and the ratios are the figures' quotients."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rmi_kv.bench.sidebyside import Side, ratios

ROOT = Path(__file__).resolve().parents[2]


def run_tool(*args: str, timeout: float = 240.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rmi_kv.bench.sidebyside", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, stdin=subprocess.DEVNULL)


def test_ratios_are_after_over_before_for_the_figures_both_have():
    assert ratios({"cpu": 200.0, "wall": 4.0, "only_before": 1.0}, {"cpu": 150.0, "wall": 5.0}) == \
        {"cpu": 0.75, "wall": 1.25}
    assert ratios({"cpu": 0.0}, {"cpu": 1.0}) == {}  # nothing measured before: no ratio


@pytest.mark.parametrize("workload", ["participant", "put"])
def test_the_same_checkout_on_both_sides_is_measured_round_by_round(tmp_path, workload):
    out = tmp_path / "sidebyside.json"
    calls = "300" if workload == "participant" else "60"  # enough CPU ticks (10 ms) on each side
    result = run_tool(str(ROOT), str(ROOT), "--workload", workload, "--rounds", "2", "--calls", calls,
                      "--replicas", "3", "--json", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["workload"] == workload
    assert len(report["rounds"]) == 2
    figure = "cpu_us_per_call" if workload == "participant" else "cpu_us_per_put"
    for round_ in report["rounds"]:
        assert round_["before"][figure] > 0 and round_["after"][figure] > 0  # both clusters did the work
        assert round_["ratio"][figure] == pytest.approx(round_["after"][figure] / round_["before"][figure])
    assert set(report["medians"]) == set(report["rounds"][0]["ratio"])
    assert "medians of the per-round ratios" in result.stdout


def test_a_directory_that_is_no_checkout_is_a_usage_error(tmp_path):
    result = run_tool(str(tmp_path), str(ROOT))
    assert result.returncode == 2
    assert "not a checkout of rmi_kv" in result.stderr


def test_a_cluster_is_ready_only_once_every_replica_serves(monkeypatch):
    """A replica registers before it has caught up: measuring then fails the first call."""
    side = Side.__new__(Side)
    side.label, side.replicas = "before", 2

    class Running:
        def poll(self):
            return None

    side.process = Running()
    monkeypatch.setattr(side, "members", lambda: {"replica1": "PYRO:a", "replica2": "PYRO:b"})
    answers = iter([True, False, True, True])  # replica2 catching up at the first look
    asked = []

    def serving(uri):
        asked.append(uri)
        return next(answers)

    monkeypatch.setattr(Side, "_serving", staticmethod(serving))
    monkeypatch.setattr("rmi_kv.bench.sidebyside.time.sleep", lambda seconds: None)
    side.wait_ready(timeout=10)
    assert asked == ["PYRO:a", "PYRO:b", "PYRO:a", "PYRO:b"]  # looked again until both served
