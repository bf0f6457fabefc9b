"""Step 6: a participant crashes before voting: a clean abort, reads go on, writes wait, then it rejoins."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rmi_kv.cli.render import quoted
from rmi_kv.demo import crashes
from rmi_kv.errors import TransactionAborted

if TYPE_CHECKING:
    from rmi_kv.demo.walkthrough import Demo

TITLE = "A participant crashes before voting"
SHOWN = "participant crash: clean abort, rejoin"
EXPLANATION = (
    "A replica restarts with a failpoint: the next canCommit it receives kills it, before it writes anything. "
    "The coordinator gets no vote, decides ABORT and tells the others (doAbort): nothing is written anywhere, "
    "and the client learns which replica failed. Reads need only the replica asked, so they go on; writes "
    "need every member (the replicas run with --failover off here, the textbook's protocol), so they abort "
    "until it is back. Then it restarts normally, rejoins, and the next write commits everywhere.")

@crashes.crash_step
def run(demo: Demo, names: list[str]) -> None:
    """replica4 dies at its first canCommit; the write aborts naming it; after its restart writes commit."""
    coordinator, victim = names[1], names[3]
    key = "demo:participant-crash"
    survivors = [name for name in names if name != victim]
    demo.kv(coordinator).put(key, "before")
    crashes.arm(demo, victim, "participant.before_prepare=crash")
    error = crashes.put_failing(demo, coordinator, key, "after", TransactionAborted)
    demo.require(error is not None and victim in getattr(error, "replicas", {}),
                 f"the client got TransactionAborted naming {victim}",
                 f"expected TransactionAborted naming {victim}, got {'success' if error is None else error}")
    crashes.confirm_crash(demo, victim, where="at its failpoint")
    seen = demo.read_everywhere(key, survivors)
    statuses = demo.statuses()
    demo.show_statuses(statuses, title=f"while {victim} is down")
    demo.say(("  reads of ", "dim"), (key, "dim"), (": ", "dim"),
             ", ".join(f"{name} {quoted(value)}" for name, value in seen.items()))
    demo.check(set(seen.values()) == {"before"}, f"reads through the {len(survivors)} other replicas still "
               "work and show the old value: nothing was written", f"reads gave {seen}")
    demo.check(not any(s.get("in_doubt") for s in statuses if s.get("reachable")),
               "the abort was clean: no replica holds anything in doubt", "some replica is in doubt")
    other = survivors[-1]
    refused = crashes.put_failing(demo, other, key, "while down", TransactionAborted, tell=False)
    demo.check(refused is not None and victim in getattr(refused, "replicas", {}),
               f"writes wait for {victim}: this one aborts too (every member must vote)",
               f"a write through {other} while {victim} is down should abort; got "
               f"{'success' if refused is None else refused}")
    started = time.monotonic()
    crashes.restart(demo, victim, saying=f"{victim} restarts normally", until=lambda: demo.settled(len(names)),
                    what=f"{victim} rejoined")
    demo.say(("  ", ""), (f"{victim} rejoined in {time.monotonic() - started:.1f} s", "dim"))
    demo.action(f"PUT {key} = \"after the restart\" through {victim}")
    demo.kv(victim).put(key, "after the restart")
    seen = demo.read_everywhere(key, names)
    statuses = demo.statuses()
    demo.show_statuses(statuses, title="after the restart")
    demo.check(set(seen.values()) == {"after the restart"},
               f"{victim} is back: the new write committed on all {len(names)} replicas",
               f"after the restart, reads gave {seen}")
    demo.agree_check(statuses, len(names))
