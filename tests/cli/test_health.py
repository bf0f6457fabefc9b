"""The health verdict over members' status dicts, the roles of ``member list``,
and how ``KeyValueClient.status()`` finds members the name server does not list."""
from __future__ import annotations

from rmi_kv.wire.client import KeyValueClient
from rmi_kv.cli.health import (IN_DOUBT_MOMENT, epoch_view, member_health, member_list, problem_sentence, role_of,
                               summary, verdict)

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
    assert found == {"healthy": True, "in_sync": True, "problems": [], "epoch": None}, "no member reports an epoch"
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


# ------------------------------------------------------------------ failover
FIVE = ["r1", "r2", "r3", "r4", "r5"]


def failover(number: int, members, *, role: str = "member", valid: bool = True, remaining: float = 0.84,
             newcomers=(), source=None, on: bool = True, stalled=None) -> dict:
    """``status()["failover"]`` as a replica gives it."""
    return {"failover": on, "epoch": {"number": number, "members": sorted(members), "newcomers": sorted(newcomers),
                                      "source": source},
            "role": role, "promised": number, "fenced": False,
            "lease": {"seconds": 1.0, "valid": valid if on else None, "remaining": remaining if on else None},
            "heard": {}, "stalled": stalled}


def in_epoch(name: str, number: int, members, **changes) -> dict:
    """A serving member of five that reports ``failover(number, members)`` (``changes`` go to the status,
    those of ``failover()`` to its failover fields)."""
    own = {key: changes.pop(key) for key in ("role", "valid", "remaining", "newcomers", "source", "on", "stalled")
           if key in changes}
    return serving(name, members=FIVE, failover=failover(number, members, **own), **changes)


def test_every_member_of_the_epoch_with_a_lease_is_healthy_and_the_epoch_is_described():
    statuses = [in_epoch(name, 2, FIVE) for name in FIVE]
    found = verdict(statuses)
    assert (found["healthy"], found["in_sync"], found["problems"]) == (True, True, [])
    assert found["epoch"] == {"failover": True, "number": 2, "members": FIVE, "newcomers": [], "source": None,
                              "configured": 5, "majority": 3, "answering": FIVE, "has_majority": True}
    entry = member_health(statuses, found)[0]
    assert entry["failover"] == statuses[0]["failover"], "health keeps the raw failover fields"


def test_a_member_down_and_left_out_of_the_epoch_is_only_unreachable():
    four = ["r1", "r2", "r3", "r5"]
    statuses = [in_epoch(name, 1, four) for name in four[:3]] + [down("r4"), in_epoch("r5", 1, four)]
    found = verdict(statuses)
    assert kinds(found) == [("r4", "unreachable")]
    assert (found["epoch"]["number"], found["epoch"]["members"], found["epoch"]["has_majority"]) == (1, four, True)
    assert summary(statuses, found) == "unhealthy: 1 of 5 members has a problem: r4 (unreachable)"


def test_a_returning_member_behind_the_epoch_or_outside_it_is_named_and_its_data_not_compared():
    four = ["r1", "r2", "r3", "r5"]
    behind = in_epoch("r4", 0, FIVE, valid=False, digest="cd" * 32)  # it still knows the epoch it died in
    statuses = [in_epoch(name, 1, four) for name in ("r1", "r2", "r3")] + [behind, in_epoch("r5", 1, four)]
    found = verdict(statuses)
    assert kinds(found) == [("r4", "outside the epoch")], "its stale digest is not a second problem"
    [outside] = found["problems"]
    assert outside["detail"] == "still in epoch 0; the others are in epoch 1: it refuses reads until it rejoins"
    assert problem_sentence(outside) == (
        "r4 is outside the epoch (still in epoch 0; the others are in epoch 1: it refuses reads until it "
        "rejoins); the members take it into a new epoch once they hear it: ask again in a moment")
    assert found["in_sync"] is False
    assert summary(statuses, found) == "unhealthy: 1 of 5 members has a problem: r4 (outside the epoch)"
    assert [e["role"] for e in member_list(statuses)] == ["member", "member", "member", "outside the epoch",
                                                          "member"]

    learned = in_epoch("r4", 1, four, role="outside the epoch", valid=False)  # it learned the epoch, not in it
    found = verdict(statuses[:3] + [learned, statuses[4]])
    assert found["problems"][0]["detail"] == ("not a member of epoch 1 (r1, r2, r3, r5): it may have missed writes, "
                                              "so it refuses reads")
    assert role_of(learned) == "outside the epoch"


def test_a_newcomer_copying_its_data_is_catching_up_from_its_source():
    statuses = [in_epoch(name, 2, FIVE, newcomers=["r4"], source="r1") for name in FIVE]
    statuses[3] = in_epoch("r4", 2, FIVE, role="catching up", valid=False, newcomers=["r4"], source="r1",
                           catching_up=True, serving=False, digest="00" * 32,
                           refusal="catching up: copying the data of the current epoch from a member")
    found = verdict(statuses)
    assert kinds(found) == [("r4", "catching up")]
    assert found["problems"][0]["detail"] == "a newcomer to epoch 2: copying its data from r1"
    assert found["in_sync"] is False
    assert role_of(statuses[3]) == "catching up"


def test_fewer_than_a_majority_answering_is_a_problem_of_the_whole_cluster():
    four = ["r1", "r2", "r3", "r5"]
    statuses = [down("r1"), down("r2"), in_epoch("r3", 1, four, valid=False), down("r4"),
                in_epoch("r5", 1, four, valid=False)]
    found = verdict(statuses)
    assert kinds(found) == [(None, "no majority"), ("r1", "unreachable"), ("r2", "unreachable"),
                            ("r3", "no read lease"), ("r4", "unreachable"), ("r5", "no read lease")]
    cluster = found["problems"][0]
    assert problem_sentence(cluster) == (
        "no majority (only r3, r5 answer, 2 of the 5 replicas: writes stop, and reads once the leases run out, "
        "until 3 do); start the replicas that are down ('python run_server.py --name NAME'): r1, r2, r4")
    assert found["problems"][3]["detail"] == "no majority of the replicas renewed it within 1 s: it refuses reads"
    assert (found["epoch"]["answering"], found["epoch"]["has_majority"]) == (["r3", "r5"], False)
    assert summary(statuses, found) == (
        "unhealthy: no majority (2 of 5 replicas answer, 3 needed); 5 of 5 members have problems: r1 (unreachable), "
        "r2 (unreachable), r3 (no read lease), r4 (unreachable), r5 (no read lease)")
    assert all(entry["problems"] != [cluster] for entry in member_health(statuses, found)), "it is nobody's"


def test_a_removed_replica_still_running_is_named():
    statuses = [in_epoch(name, 3, FIVE) for name in FIVE] + [
        serving("r6", members=FIVE, failover=failover(3, FIVE, role="removed", valid=False))]
    found = verdict(statuses)
    assert kinds(found) == [("r6", "removed")]
    assert problem_sentence(found["problems"][0]) == (
        "r6 was removed from the members (it runs, but is no longer in the member list); stop it; started again, "
        "it sets its old data aside and rejoins")
    assert role_of(statuses[5]) == "removed"


def test_failover_off_is_the_strict_protocol_without_epoch_problems():
    statuses = [in_epoch(name, 0, FIVE, on=False) for name in FIVE[:4]] + [down("r5")]
    found = verdict(statuses)
    assert kinds(found) == [("r5", "unreachable")], "no lease, no majority: every member must vote"
    assert (found["epoch"]["failover"], found["epoch"]["number"], found["epoch"]["members"]) == (False, 0, FIVE)
    assert epoch_view([down("r1")]) is None


def test_damage_not_yet_repaired_is_a_problem_with_what_to_do_and_a_repaired_one_is_not():
    found_damage = {"damage": {"what": "the digest recomputed from the 100 live entries differs", "where": "table kv"},
                    "found_by": "verify command", "repair": "anti-entropy: the keys that differ, from a majority",
                    "repaired_at": None}
    damaged = serving("r2", serving=False, refusal="re-syncing", integrity={"damage": [found_damage]})
    found = verdict([serving("r1"), damaged, serving("r3")])
    assert kinds(found) == [("r2", "data damaged")]
    problem = found["problems"][0]
    assert "found by the verify command" in problem["detail"] and "table kv" in problem["detail"]
    assert "re-syncs the keys that differ" in problem["hint"]
    assert problem_sentence(problem).startswith("r2 found its data damaged (the digest recomputed")
    repaired = serving("r2", integrity={"damage": [{**found_damage, "repaired_at": 1.0}]})
    assert verdict([serving("r1"), repaired, serving("r3")])["healthy"] is True


def test_verify_shows_each_member_and_the_verdict():
    from rich.console import Console

    from rmi_kv.cli.render import verify_renderables

    ok = {"name": "r1", "reachable": True, "ok": True, "live": 100, "computed_digest": DIGEST, "seconds": 0.01}
    bad = {"name": "r2", "reachable": True, "ok": False, "damage": {"what": "the digest differs", "where": "table kv"}}
    gone = {"name": "r3", "reachable": False, "error": "r3 is unreachable"}
    console = Console(width=80, record=True, color_system=None)
    for renderable in verify_renderables({"replicas": [ok, bad, gone], "healthy": False}):
        console.print(renderable)
    text = console.export_text()
    assert "r1: ok: 100 keys, digest abababababab recomputed from the data (0.01 s)" in text
    assert "r2: damaged: the digest differs (table kv)" in text
    assert "r3: not checked: r3 is unreachable" in text
    assert text.rstrip().endswith("not every member's data could be verified")
