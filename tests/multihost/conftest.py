"""Fixtures of the multi-host tests: replicas on separate hosts (network
namespaces), and a loopback cluster with one replica behind a fault proxy.

The namespace tests need root and iproute2; without them they are skipped,
and the reason is printed at the end of the run.
"""
from __future__ import annotations

import pytest

from support.launchers import DECISION_PAUSE_MS, REPLICA_ARGS, SLOW_DECIDER, LabCluster, ProxiedCluster
from support.netns import Lab, NetnsUnavailable
from support.skips import REASONS, skip_reason  # noqa: E402


def pytest_terminal_summary(terminalreporter) -> None:
    for reason in REASONS:
        terminalreporter.write_line(f"multi-host tests skipped: {reason}", yellow=True)


@pytest.fixture(autouse=True)
def _logs_of_a_failed_test(request):
    """When a test fails, print the logs of the cluster it used (shown with its report)."""
    clusters = [request.getfixturevalue(name) for name in ("lab_cluster", "proxied_cluster")
                if name in request.fixturenames]
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for cluster in clusters:
            print(cluster.logs())


@pytest.fixture
def lab():
    """An empty namespace lab (switch only); every namespace it made is deleted afterwards."""
    made = Lab()
    try:
        made.start()
    except NetnsUnavailable as error:
        pytest.skip(skip_reason(str(error)))
    try:
        yield made
    finally:
        made.close()
    assert made.leftovers() == [], "namespaces left behind"


@pytest.fixture(scope="module")
def lab_cluster(tmp_path_factory):
    """Name server, five replicas and the client agent, each on its own host."""
    made = Lab()
    try:
        made.start()
    except NetnsUnavailable as error:
        pytest.skip(skip_reason(str(error)))
    # the strict protocol (--failover off): these tests show what a partition does to two-phase commit itself
    cluster = LabCluster(made, tmp_path_factory.mktemp("lab-cluster"), replica_args=[*REPLICA_ARGS, "--failover", "off"])
    try:
        cluster.start()
        yield cluster
    finally:
        made.heal_all()
        cluster.stop()
        made.close()
    assert made.leftovers() == [], "namespaces left behind"


@pytest.fixture(scope="module")
def proxied_cluster(tmp_path_factory):
    """Five replicas on loopback; replica5 is reached only through ``cluster.proxy``."""
    # the strict protocol, as in the lab: these tests show what the network does to two-phase commit itself
    cluster = ProxiedCluster(5, data_dir=tmp_path_factory.mktemp("proxied-cluster"),
                             replica_args=[*REPLICA_ARGS, "--failover", "off"],
                             extra_args={SLOW_DECIDER: [
                                 "--failpoint", f"coordinator.after_decision=delay:{DECISION_PAUSE_MS}"]})
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
