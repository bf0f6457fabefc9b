"""How ``KeyValueClient.status()`` finds the members, those the name server does not list too."""
from __future__ import annotations

from rmi_kv.client import KeyValueClient


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


def test_status_shows_a_registered_name_no_member_counts():
    client = Survey(registered={"r1": "PYRO:x@h:1", "old": "PYRO:x@h:9"}, members={"r1": {"members": ["r1"]}})
    assert [(s["name"], s["reachable"]) for s in client.status()] == [("old", False), ("r1", True)]
