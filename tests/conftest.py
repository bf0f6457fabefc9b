"""Shared test fixtures: a real local cluster (name server + replica processes)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)  # the tests/ folder: import support.*

from rmi_kv.cluster import LocalCluster


@pytest.fixture
def make_cluster(tmp_path, request):
    """Factory for local clusters on 127.0.0.1; every process is stopped afterwards,
    and the logs are printed when the test failed."""
    clusters: list[LocalCluster] = []

    def make(replicas: int = 5, **options) -> LocalCluster:
        cluster = LocalCluster(replicas, data_dir=tmp_path / f"cluster{len(clusters)}", **options)
        clusters.append(cluster)
        return cluster.start()

    yield make
    failed = getattr(request.node, "rep_call", None)
    for cluster in clusters:
        if failed is not None and failed.failed:
            print(cluster.logs())
        cluster.stop()


@pytest.fixture
def cluster(make_cluster) -> LocalCluster:
    """A running five-replica cluster."""
    return make_cluster(5)


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory) -> LocalCluster:
    """One five-replica cluster for a module's tests that leave every replica running."""
    cluster = LocalCluster(5, data_dir=tmp_path_factory.mktemp("shared-cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
