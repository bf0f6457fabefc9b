"""Shared test fixtures: a real local cluster (name server + replica processes), and for
the tests of one layer: SQLite storages under tmp_path, participants, coordinators (closed
afterwards), txids, and a condition poller with a deadline."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)  # the tests/ folder: import support.*

from rmi_kv.core.coordinator import Coordinator
from rmi_kv.core.participant import Participant
from rmi_kv.server.cluster import LocalCluster, wait_for
from rmi_kv.storage.sqlite import Storage


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


@pytest.fixture
def strict_cluster(make_cluster) -> LocalCluster:
    """A running five-replica cluster with failover off (the course setting: a
    member down stops every write until it is back)."""
    return make_cluster(5, replica_args=["--failover", "off"])


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


# ------------------------------------------------ one layer at a time
@pytest.fixture
def wait_until():
    """Poll ``predicate`` until it is true or ``timeout`` passes; returns its last value."""

    def wait(predicate, timeout=5.0, interval=0.002):
        try:
            return wait_for(predicate, timeout, interval)
        except TimeoutError:
            return predicate()

    return wait


@pytest.fixture
def make_storage(tmp_path):
    """Storage factory: ``make_storage(name)`` opens (or reopens) tmp_path/name.sqlite3."""
    opened = []

    def make(name="replica", durable=True):
        storage = Storage(tmp_path / f"{name}.sqlite3", durable=durable)
        opened.append(storage)
        return storage

    yield make
    for storage in opened:
        try:
            storage.close()
        except Exception:
            pass


@pytest.fixture
def make_participant(make_storage):
    """Participant factory over a fresh (or reopened) storage of the same name."""

    def make(name="p1", storage=None, **options):
        return Participant(name, storage if storage is not None else make_storage(name), **options)

    return make


@pytest.fixture
def make_coordinator(make_storage):
    """Coordinator factory; every coordinator's executor is shut down afterwards."""
    made = []

    def make(name="c0", storage=None, **options):
        options.setdefault("conflict_backoff", 0.001)
        coordinator = Coordinator(name, storage if storage is not None else make_storage(name), **options)
        made.append(coordinator)
        return coordinator

    yield make
    for coordinator in made:
        coordinator.close()


@pytest.fixture
def new_txid():
    """Make txids (COORDINATOR:BOOTID:COUNTER:STARTED) started now, each one
    strictly younger than the one before (wait-die order = creation order).
    Make them after the storages they are sent to: a replica cannot vouch for
    transactions that started before its data was created."""
    state = {"counter": 0, "last": 0}

    def make(coordinator="c0", boot="0000abcd"):
        state["counter"] += 1
        state["last"] = max(time.time_ns() // 1000 + 1, state["last"] + 1)
        return f"{coordinator}:{boot}:{state['counter']}:{state['last']}"

    return make
