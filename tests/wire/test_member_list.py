"""The member list: kept by the replica, never shrunk by what the name server forgot.

The name server is faked (``registrations`` and ``register`` replaced), the
store is a real SQLite storage, reopened to show the list is durable.
"""
import pytest

from rmi_kv.server.datadir import DataDirectoryLock
from rmi_kv.errors import AlreadyRunning, ReplicaUnavailable
from rmi_kv.wire.peers import Membership

URI = "PYRO:rmi_kv.replica.{}@127.0.0.1:{}"


class FakeNameServer:
    """What a Pyro5 name server lists: replica entries and removal markers."""

    def __init__(self, entries=None, removed=()):
        self.entries = dict(entries or {})
        self.removed = set(removed)

    def attach(self, membership: Membership) -> Membership:
        membership.registrations = lambda: (dict(self.entries), set(self.removed))

        def register(uri: str) -> None:
            membership.self_uri = uri
            self.entries[membership.self_name] = uri
            membership.learn({membership.self_name: uri})

        membership.register = register
        return membership


def five(port_base=4000):
    return {f"replica{i}": URI.format(f"replica{i}", port_base + i) for i in range(1, 6)}


@pytest.fixture
def membership_of(make_storage):
    made = []

    def make(nameserver: FakeNameServer, name="replica2", storage_name="replica2"):
        membership = nameserver.attach(Membership(name, "127.0.0.1", 1, store=make_storage(storage_name)))
        made.append(membership)
        membership.refresh()  # as a replica does at start
        return membership

    yield make
    for membership in made:
        membership.close()


def test_an_emptied_name_server_leaves_every_member_a_member(membership_of):
    nameserver = FakeNameServer(five())
    membership = membership_of(nameserver)
    assert membership.names() == sorted(five())
    nameserver.entries = {"replica2": five()["replica2"], "replica3": five()["replica3"]}  # restarted, 2 back
    assert sorted(membership.refresh()) == sorted(five())
    assert membership.uri_of("replica5") == five()["replica5"], "a forgotten member keeps its last known address"


def test_the_member_list_survives_a_restart_with_an_empty_name_server(membership_of):
    membership_of(FakeNameServer(five()), storage_name="kept").close()
    again = membership_of(FakeNameServer({}), storage_name="kept")
    assert again.names() == sorted(five())
    assert sorted(again.refresh()) == sorted(five())


def test_a_replica_the_name_server_lost_registers_again(membership_of):
    nameserver = FakeNameServer(five())
    membership = membership_of(nameserver)
    membership.register(five()["replica2"])
    nameserver.entries = {}
    membership.refresh()
    assert nameserver.entries == {"replica2": five()["replica2"]}


def test_a_new_address_replaces_the_old_one(membership_of):
    nameserver = FakeNameServer(five())
    membership = membership_of(nameserver)
    nameserver.entries["replica4"] = URI.format("replica4", 9999)
    membership.refresh()
    assert membership.uri_of("replica4") == URI.format("replica4", 9999)


def test_only_a_removal_drops_a_member_and_a_rejoin_brings_it_back(membership_of):
    nameserver = FakeNameServer(five())
    membership = membership_of(nameserver, storage_name="removal")
    del nameserver.entries["replica5"]
    nameserver.removed = {"replica5"}
    membership.refresh()
    assert "replica5" not in membership.names()
    assert membership.removed() == ["replica5"]
    with pytest.raises(ReplicaUnavailable, match="not a member"):
        membership.pool("replica5")
    nameserver.removed = set()  # a name server restarted without the marker: the removal holds
    membership.refresh()
    assert "replica5" not in membership.names()
    nameserver.entries["replica5"] = URI.format("replica5", 7000)  # started again: it set its data aside
    membership.refresh()
    assert "replica5" in membership.names() and membership.removed() == []


def test_forget_is_durable(membership_of):
    membership = membership_of(FakeNameServer(five()), storage_name="forget")
    membership.forget({"replica4"})
    membership.close()
    again = membership_of(FakeNameServer({}), storage_name="forget")
    assert "replica4" not in again.names() and again.removed() == ["replica4"]


def test_a_member_known_by_name_only_is_a_member_that_cannot_be_reached(membership_of):
    membership = membership_of(FakeNameServer({}))
    membership.learn({"replica9": None})
    assert membership.names() == ["replica9"]
    with pytest.raises(ReplicaUnavailable, match="address is not known"):
        membership.pool("replica9")
    membership.learn({"replica9": None, "replica8": URI.format("replica8", 8)})
    membership.learn({"replica9": URI.format("replica9", 9)})
    assert membership.members() == {"replica8": URI.format("replica8", 8), "replica9": URI.format("replica9", 9)}


def test_a_data_directory_takes_one_process(tmp_path):
    first = DataDirectoryLock(tmp_path / "replica3")
    try:
        with pytest.raises(AlreadyRunning, match=r"in use by another replica process \(PID \d+\)") as refused:
            DataDirectoryLock(tmp_path / "replica3")
        assert refused.value.directory == str(tmp_path / "replica3")
    finally:
        first.release()
    DataDirectoryLock(tmp_path / "replica3").release()  # free again once released
