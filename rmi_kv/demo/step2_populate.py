"""Step 2: pre-populate the store with ten keys in one transaction, and see every replica hold them."""
from __future__ import annotations

from typing import TYPE_CHECKING

from rmi_kv.cli.render import make_table, value_text
from rmi_kv.demo.scenario import COURSE_KEYS

if TYPE_CHECKING:
    from rmi_kv.demo.walkthrough import Demo

TITLE = "Pre-populate the store"
SHOWN = "ten keys written in one transaction"
EXPLANATION = (
    "Before the course scenario, ten keys go in through one replica, in one atomic transaction. Every write "
    "is a two-phase commit across all replicas, so afterwards each replica holds all ten, not just the one "
    "the client asked.")


def run(demo: Demo) -> None:
    """Write the course keys through the first replica; list them through every replica."""
    first = demo.populate()
    demo.action(f"one transaction through {first}: {len(COURSE_KEYS)} keys, {COURSE_KEYS[0]} .. {COURSE_KEYS[-1]}")
    names = demo.names()
    table = make_table(("replica", "course:* keys it lists", COURSE_KEYS[0], COURSE_KEYS[-1]),
                       right=("course:* keys it lists",))
    listed = {}
    for name in names:
        kv = demo.kv(name)
        listed[name] = kv.keys("course:", 100)
        table.add_row(name, str(len(listed[name])), value_text(kv.get(COURSE_KEYS[0])),
                      value_text(kv.get(COURSE_KEYS[-1])))
    demo.show(table)
    demo.check(all(listed[n] == COURSE_KEYS for n in names),
               f"every replica holds all {len(COURSE_KEYS)} keys, though only {first} was asked",
               "some replica does not list the ten keys")
    demo.agree_check(demo.statuses(), len(names))
