"""Step 3: PUT, GET and DELETE, each through a different replica, then every key asked of every replica."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Optional

from rich.text import Text

from rmi_kv.cli.render import make_table, quoted, value_text
from rmi_kv.demo.scenario import CHECK_FAILED, CHECK_OK, COURSE_KEYS, FRUITS

if TYPE_CHECKING:
    from rmi_kv.demo.walkthrough import Demo

TITLE = "PUT, GET and DELETE through every replica"
SHOWN = "5 PUTs, 5 GETs, 5 DELETEs, each replica agrees"
EXPLANATION = (
    "A client may use any replica. Five PUTs, each through a different replica; five GETs, each through a "
    "different replica than the one that wrote the key; five DELETEs, each through yet another. Then every "
    "replica is asked for every key: they must all give the same answers.")


def run(demo: Demo) -> None:
    """Fifteen requests spread over the replicas, then a grid of every key read through every replica."""
    if not demo.populated:
        first = demo.populate()
        demo.action(f"set-up: the ten course keys written through {first} (as step 2 does)")
    names = demo.names()
    n = len(names)
    ops = make_table(("#", "request", "through", "answer", "ms"), right=("#", "ms"))
    wrong: list[str] = []

    def request(label: str, through: str, call: Callable[[], Any], expected: Any,
                shown: Callable[[Any], str]) -> None:
        started = time.perf_counter()
        answer = call()
        elapsed = (time.perf_counter() - started) * 1000.0
        good = answer == expected
        if not good:
            wrong.append(f"{label} via {through} answered {answer!r}, expected {expected!r}")
        ops.add_row(str(len(ops.rows) + 1), label, through,
                    Text(shown(answer), style="green" if good else "bold red"), f"{elapsed:.1f}")

    expected: dict[str, Optional[str]] = {}
    for index in range(5):
        key, writer = COURSE_KEYS[index], names[index % n]
        request(f"PUT {key} = {quoted(FRUITS[index])}", writer,
                lambda: demo.kv(writer).put(key, FRUITS[index]), None, lambda _: "OK")
        expected[key] = FRUITS[index]
    for index in range(5):
        key, reader = COURSE_KEYS[index], names[(index + 2) % n]
        request(f"GET {key}", reader, lambda: demo.kv(reader).get(key), FRUITS[index],
                lambda answer: quoted(answer) if answer is not None else "(none)")
    for index in range(5):
        key, deleter = COURSE_KEYS[5 + index], names[(index + 4) % n]
        request(f"DELETE {key}", deleter, lambda: demo.kv(deleter).delete(key), True,
                lambda answer: "deleted" if answer else "not found")
        expected[key] = None
    demo.show(ops)
    demo.check(not wrong, "all 15 requests gave the expected answer", "; ".join(wrong))

    demo.heading("every key, asked of every replica")
    grid = make_table(("key", *names, "agree"), compact=True)  # seven columns: fits 80 with whole values
    disagreeing = []
    for key in COURSE_KEYS:
        seen = demo.read_everywhere(key, names)
        agree = set(seen.values()) == {expected[key]}
        if not agree:
            disagreeing.append(key)
        grid.add_row(key, *[value_text(seen[name]) for name in names],
                     Text(CHECK_OK, style="green") if agree else Text(CHECK_FAILED, style="bold red"))
    demo.show(grid)
    demo.check(not disagreeing, f"every replica agrees on all {len(COURSE_KEYS)} keys "
               f"({len(COURSE_KEYS) * n} reads)", "replicas disagree on " + ", ".join(disagreeing))
    demo.agree_check(demo.statuses(), n)
