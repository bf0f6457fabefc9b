"""The health verdict over members' status dicts, the roles of ``member list``,
and how ``KeyValueClient.status()`` finds members the name server does not list."""
from __future__ import annotations

from rmi_kv.wire.client import KeyValueClient
from rmi_kv.cli.health import IN_DOUBT_MOMENT, member_list, problem_sentence, role_of, summary, verdict

DIGEST = "ab" * 32


def serving(name: str, **changes) -> dict:
    """The status of a healthy, reachable member, with ``changes``."""
    status = {"name": name, "uri": f"PYRO:rmi_kv.replica.{name}@127.0.0.1:4000", "reachable": True,
              "registered": True, "serving": True, "refusal": None, "catching_up": False, "digest": DIGEST,
              "in_doubt": [], "in_doubt_ages": {}, "members": ["r1", "r2", "r3"], "latency_ms": 0.41}
    status.update(changes)
    return status


def down(name: str, cause: str = "connection refused") -> dict:
    return {"name": name, "uri": f"PYRO:rmi_kv.replica.{name}@127.0.0.1:4000", "reachable": False,
            "registered": True, "cause": cause, "error": f"replica {name} is unreachable ({cause}); start it"}


def kinds(found: dict) -> list[tuple[str, str]]:
    return [(p["member"], p["problem"]) for p in found["problems"]]


def test_all_members_serving_with_equal_digests_is_healthy():
    statuses = [serving("r1"), serving("r2"), serving("r3")]
    found = verdict(statuses)
    assert found == {"healthy": True, "in_sync": True, "problems": []}
    assert summary(statuses, found) == "healthy: all 3 members reachable, serving and in sync"


def test_an_unreachable_member_is_named_with_its_cause_and_what_to_do():
    statuses = [serving("r1"), serving("r2"), down("r3")]
    found = verdict(statuses)
    assert (found["healthy"], found["in_sync"]) == (False, False)
    [problem] = found["problems"]
    assert problem == {"member": "r3", "problem": "unreachable", "detail": "connection refused",
                       "hint": "is it running? start it with 'python run_server.py --name r3'"}
    assert problem_sentence(problem) == ("r3 is unreachable (connection refused); is it running? "
                                         "start it with 'python run_server.py --name r3'")
    assert summary(statuses, found) == "unhealthy: 1 of 3 members has a problem: r3 (unreachable)"


def test_a_digest_that_differs_from_the_majority_is_named():
    statuses = [serving("r1"), serving("r2", digest="cd" * 32), serving("r3")]
    found = verdict(statuses)
    assert kinds(found) == [("r2", "digest differs")]
    assert found["in_sync"] is False
    assert "its digest cdcdcdcdcdcd differs from abababababab, held by 2 of 3 members" in found["problems"][0]["detail"]


def test_digests_that_differ_without_a_majority_name_every_member():
    found = verdict([serving("r1"), serving("r2", digest="cd" * 32)])
    assert kinds(found) == [("r1", "digest differs"), ("r2", "digest differs")]
    assert "no digest is held by a majority" in found["problems"][0]["detail"]


def test_catching_up_and_not_serving_are_problems_but_a_catching_up_digest_is_not_compared():
    statuses = [serving("r1"), serving("r2", catching_up=True, serving=False, digest="00" * 32,
                                       refusal="catching up: copying the committed data from a peer"),
                serving("r3", serving=False, refusal="shutting down")]
    found = verdict(statuses)
    assert kinds(found) == [("r2", "catching up"), ("r3", "not serving")]
    assert found["problems"][1]["detail"] == "shutting down"
    assert found["in_sync"] is False
    assert [role_of(s) for s in statuses] == ["member", "catching up", "not serving: shutting down"]


def test_in_doubt_counts_only_after_a_moment_and_names_the_coordinator_that_is_down():
    fresh = serving("r2", in_doubt=["r1:b:1:1"], in_doubt_ages={"r1:b:1:1": 0.2})
    assert verdict([serving("r1"), fresh, serving("r3")])["healthy"] is True, "a round in flight is not a problem"

    stuck = serving("r2", in_doubt=["r1:b:1:1"], in_doubt_ages={"r1:b:1:1": IN_DOUBT_MOMENT + 7.0})
    found = verdict([down("r1"), stuck, serving("r3")])
    assert kinds(found) == [("r1", "unreachable"), ("r2", "in doubt")]
    doubt = found["problems"][1]
    assert doubt["detail"] == (f"1 transaction prepared and undecided for more than {IN_DOUBT_MOMENT:g} s: "
                               f"r1:b:1:1 ({IN_DOUBT_MOMENT + 7.0:.1f} s)")
    assert doubt["hint"] == "their coordinator is down: start r1 ('python run_server.py --name r1')"

    ageless = serving("r2", in_doubt=["r1:b:1:1"], in_doubt_ages=None)
    assert kinds(verdict([serving("r1"), ageless])) == [("r2", "in doubt")], "without ages it cannot be told apart"


def test_member_list_roles_addresses_and_the_replica_in_use():
    unknown = {"name": "r4", "uri": None, "reachable": False, "registered": False,
               "cause": "not registered in the name server, and no member knows its address"}
    unregistered = serving("r3", registered=False)
    entries = member_list([serving("r1"), down("r2"), unregistered, unknown], in_use="r1")
    assert [(e["name"], e["reachable"], e["registered"], e["role"], e["in_use"]) for e in entries] == [
        ("r1", True, True, "member", True), ("r2", False, True, "unreachable", False),
        ("r3", True, False, "member", False), ("r4", False, False, "not registered", False)]
    assert entries[0]["uri"] == "PYRO:rmi_kv.replica.r1@127.0.0.1:4000"
    assert entries[1]["error"] == "connection refused"
    found = verdict([serving("r1"), unknown])
    assert found["problems"][0]["detail"] == "not registered in the name server, and no member knows its address"


class Survey(KeyValueClient):
    """KeyValueClient.status() over a made-up name server and members, without a network."""

    def __init__(self, registered: dict, members: dict) -> None:
        super().__init__()
        self.registered, self.members, self.asked = registered, members, []

    def replicas(self, refresh: bool = False) -> dict:
        return dict(self.registered)

    def _member_status(self, name: str, uri: str, registered: bool) -> dict:
        self.asked.append((name, uri, registered))
        if name in self.members:
            return {**self.members[name], "name": name, "uri": uri, "reachable": True, "registered": registered}
        return {"name": name, "uri": uri, "reachable": False, "registered": registered, "cause": "refused"}


def test_status_asks_members_the_name_server_lost_at_the_address_a_member_knows():
    everyone = ["r1", "r2", "r3", "r4"]
    client = Survey(registered={"r1": "PYRO:x@h:1"},  # the name server restarted: only r1 registered again
                    members={"r1": {"members": everyone, "member_uris": {"r3": "PYRO:x@h:3"}},
                             "r3": {"members": everyone, "member_uris": {"r2": "PYRO:x@h:2"}},
                             "r2": {"members": everyone}})  # r4: nobody knows where
    statuses = client.status()
    assert [s["name"] for s in statuses] == everyone
    assert client.asked == [("r1", "PYRO:x@h:1", True), ("r3", "PYRO:x@h:3", False), ("r2", "PYRO:x@h:2", False)]
    r4 = statuses[3]
    assert (r4["reachable"], r4["registered"], r4["uri"]) == (False, False, None)
    assert r4["cause"] == "not registered in the name server, and no member knows its address"
    assert [(e["name"], e["role"]) for e in member_list(statuses)] == [
        ("r1", "member"), ("r2", "member"), ("r3", "member"), ("r4", "not registered")]


def test_status_shows_a_registered_name_no_member_counts():
    client = Survey(registered={"r1": "PYRO:x@h:1", "old": "PYRO:x@h:9"}, members={"r1": {"members": ["r1"]}})
    assert [(s["name"], s["reachable"]) for s in client.status()] == [("old", False), ("r1", True)]
