"""Step 1: the cluster, as the name server knows it and as each replica describes itself."""
from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from rmi_kv.cli.render import make_table
from rmi_kv.demo.scenario import REPLICAS
from rmi_kv.server.cluster import wait_for

if TYPE_CHECKING:
    from rmi_kv.demo.walkthrough import Demo

TITLE = "The cluster"
SHOWN = "the replicas, from the name server"
EXPLANATION = (
    "rmi_kv runs five replica servers. Each one registers a remote KeyValue object with the Pyro5 name server "
    "(the RMI registry of this system) as rmi_kv.replica.NAME. A client asks the name server where the "
    "replicas are, then talks to any one of them. Every replica holds a full copy of the data.")


def _address(uri: str) -> str:
    return uri.rsplit("@", 1)[-1]


def _state(status: dict) -> Text:
    if not status.get("reachable"):
        return Text("unreachable", style="bold red")
    return Text("serving", style="green") if status["serving"] else Text("refusing", style="yellow")


def run(demo: Demo) -> None:
    """A row per registered replica: its name, address, state, keys and how many members it knows."""
    names = demo.names()
    expected = REPLICAS if demo.cluster is not None else len(names)
    if demo.cluster is not None:
        wait_for(lambda: demo.settled(expected) and all(sorted(s["members"]) == names for s in demo.statuses()),
                 timeout=15.0, what="every replica ready")
    members = demo.kv().replicas(refresh=True)
    statuses = {s["name"]: s for s in demo.statuses()}
    demo.heading(f"what the name server at {demo.kv().ns_host}:{demo.kv().ns_port} knows, and each replica says")
    table = make_table(("replica", "registered as", "address", "state", "keys", "members"),
                       right=("keys", "members"), no_wrap=True)
    for name in names:
        status = statuses.get(name, {"reachable": False})
        up = status.get("reachable")
        table.add_row(name, f"rmi_kv.replica.{name}", _address(members[name]), _state(status),
                      str(status["keys"]) if up else "-", str(len(status["members"])) if up else "-")
    demo.show(table)
    if demo.cluster is not None:
        demo.check(len(names) == REPLICAS, f"{REPLICAS} replicas are registered in the name server",
                   f"{len(names)} replicas are registered, not {REPLICAS}")
    else:
        demo.check(len(names) >= 1, f"{len(names)} replicas are registered in the name server",
                   "no replica is registered in the name server")
    demo.check(all(statuses.get(n, {}).get("reachable") and statuses[n]["serving"] for n in names),
               "every replica answers and serves requests",
               "some replicas do not answer: " + ", ".join(n for n in names
                                                           if not statuses.get(n, {}).get("reachable")))
    demo.check(all(sorted(statuses[n].get("members", [])) == names for n in names if n in statuses),
               "every replica knows every member (writes go to all of them)",
               "some replica's member list differs from the name server's")
