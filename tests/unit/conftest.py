"""Fixtures of the unit tests: SQLite storages under tmp_path, participants,
coordinators (closed afterwards), and a condition poller with a deadline."""
import time

import pytest

from rmi_kv.cluster import wait_for
from rmi_kv.coordinator import Coordinator
from rmi_kv.participant import Participant
from rmi_kv.storage import Storage


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
