"""What the crash steps (6 to 9) share: whether they may run, arming a failpoint, a write that is
expected to fail, confirming that the replica died where it was meant to, and its restart; and, for the
failover steps (8 and 9), the replicas' options with failover on and when every one is a member again."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

from rmi_kv.cli.health import epoch_view, failover_of
from rmi_kv.cli.render import quoted
from rmi_kv.errors import RmiKvError
from rmi_kv.server.cluster import wait_for

if TYPE_CHECKING:
    from rmi_kv.demo.walkthrough import Demo


def crash_step(body: Callable[[Demo, list[str]], None]) -> Callable[[Demo], None]:
    """A step that crashes replicas: ``body(demo, names)`` runs on the embedded cluster (``names``: its
    replicas); on a cluster the demo did not start, the step is skipped, saying why."""

    def run(demo: Demo) -> None:
        if demo.cluster is not None:
            body(demo, list(demo.cluster.names))
        else:
            _skip(demo)

    run.__doc__, run.__name__ = body.__doc__, body.__name__
    return run


def _skip(demo: Demo) -> None:
    assert demo.current is not None
    if demo.allow_crash:
        demo.current.note = ("crash steps need replicas the demo started itself (to arm failpoints and "
                             "restart them); they run on the embedded cluster: leave out --ns-host/--ns-port")
    else:
        demo.current.note = ("the demo does not crash replicas of a cluster it did not start; leave out "
                             "--ns-host/--ns-port to see this step")
    demo.current.status = "skipped"
    demo.say(("skipped: ", "bold yellow"), (demo.current.note, "yellow"))


def arm(demo: Demo, replica: str, failpoint: str) -> None:
    """Restart ``replica`` with ``failpoint`` armed, and wait until the cluster has settled again."""
    demo.action(f"{replica} restarts with the failpoint {failpoint}")
    demo.cluster.restart_replica(replica, failpoints=[failpoint])
    wait_for(lambda: demo.settled(len(demo.cluster.names)), timeout=15.0, what=f"{replica} back in the cluster")


def arm_each(demo: Demo, failpoints: Mapping[str, str], *, until: Callable[[], Any]) -> None:
    """Restart each replica of ``failpoints`` with its failpoint armed (they stop, then start together), and
    wait, at most 15 s, until ``until()`` answers (with failover on: every one a member again)."""
    cluster = demo.cluster
    for replica, failpoint in failpoints.items():
        demo.action(f"{replica} restarts with the failpoint {failpoint}")
    for replica in failpoints:
        if cluster.replicas[replica].alive():
            cluster.stop_replica(replica)
    starting = [cluster.start_replica(replica, failpoints=[failpoint], wait=False)
                for replica, failpoint in failpoints.items()]
    for child in starting:
        child.wait_ready()
    wait_for(until, timeout=15.0, what=f"{', '.join(failpoints)} back in the cluster")


def put_failing(demo: Demo, through: str, key: str, value: str, expected: type[RmiKvError], *,
                tell: bool = True) -> Optional[RmiKvError]:
    """PUT ``key`` through ``through``; the ``expected`` error it meets (said when ``tell``), or None."""
    demo.action(f"PUT {key} = {quoted(value)} through {through}")
    try:
        demo.kv(through).put(key, value)
    except expected as error:
        if tell:
            demo.say((f"  client got {expected.__name__}: ", "yellow"), str(error))
        return error
    return None


def confirm_crash(demo: Demo, replica: str, *, where: str) -> None:
    """``replica`` exited (at its failpoint): the step goes on only if it did."""
    code = demo.cluster.replicas[replica].wait_exit(10)
    demo.require(code is not None, f"{replica} crashed {where} (exit status {code})", f"{replica} did not crash")


def restart(demo: Demo, replica: str, *, saying: str, until: Callable[[], Any], what: str) -> Any:
    """Start ``replica`` again (failpoints off) and wait, at most 20 s, for ``until()``; returns its answer."""
    demo.action(saying)
    demo.cluster.start_replica(replica)
    return wait_for(until, timeout=20.0, what=what)


# ----------------------------------------------------------------- failover on
def with_failover(args: list[str], setting: tuple[str, str]) -> list[str]:
    """``args`` with every --failover option replaced by ``setting``."""
    kept: list[str] = []
    words = iter(args)
    for word in words:
        if word == "--failover":
            next(words, None)
        elif not word.startswith("--failover="):
            kept.append(word)
    return [*kept, *setting]


def failover_settled(demo: Demo, names: list[str]) -> Optional[list[dict]]:
    """Every replica reachable, serving, equal data, and a member of one epoch (of all of them) with a read lease."""
    statuses = demo.settled(len(names))
    if not statuses:
        return None
    epoch = epoch_view(statuses)
    ok = (epoch is not None and epoch["failover"] and epoch["members"] == sorted(names)
          and all(member_with_lease(s, epoch["number"]) for s in statuses))
    return statuses if ok else None


def member_with_lease(status: dict, number: int) -> bool:
    """``status`` is a member's of epoch ``number``, holding a read lease."""
    found = failover_of(status) or {}
    return (found.get("role") == "member" and (found.get("epoch") or {}).get("number") == number
            and bool((found.get("lease") or {}).get("valid")))
