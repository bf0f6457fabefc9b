"""The guided demo: the whole system at work, failures included.

    python run_client.py --demo            (or: python -m rmi_kv.demo)

Without ``--ns-host``/``--ns-port`` it starts its own cluster (a name server
and five replicas as child processes on 127.0.0.1, ports chosen by the OS,
data in a temporary directory) and removes all of it at the end, on Ctrl-C
and on any error. Eight steps, each a titled panel saying what happens and
why, then the evidence, then the checks it makes:

    1 the cluster              5 concurrent conflicting writes to one key
    2 pre-populate the store   6 a participant crashes before voting
    3 PUT/GET/DELETE anywhere  7 the coordinator crashes after its decision
    4 one write, traced        8 the summary

Exit code 0 when every check held; 1 (and "demo failed at step N: reason")
otherwise; 130 on Ctrl-C; 2 for a usage error.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from rmi_kv import options
from rmi_kv.config import DEFAULT_NS_HOST, DEFAULT_NS_PORT
from rmi_kv.cli.render import phase_of
from rmi_kv.errors import NameServerUnavailable, OutcomeUnknown, RmiKvError, TransactionAborted

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: how many replicas the embedded cluster runs
REPLICAS = 5
#: keys of the course scenario (steps 2 and 3)
COURSE_KEYS = [f"course:{index}" for index in range(10)]
#: what the five PUTs of step 3 write, one per replica
FRUITS = ["apple", "banana", "cherry", "damson", "elderberry"]
CHECK_OK, CHECK_FAILED = "✔", "✘"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise _UsageExit(EXIT_USAGE)


class _UsageExit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="run_client.py --demo",
        description="A guided walk through rmi_kv: the cluster, reads and writes through every replica, "
                    "one write message by message, conflicting writes, a participant crash and a "
                    "coordinator crash with recovery. Every step checks what it shows.",
        epilog="Which cluster: without --ns-host and --ns-port the demo always starts its own (a name server "
               "and 5 replicas on 127.0.0.1, OS-chosen ports, data in a temporary directory, all removed at "
               "the end). With either option it uses the cluster already running there (the other one "
               f"defaults to {DEFAULT_NS_HOST}:{DEFAULT_NS_PORT}), writes keys course:* and demo:* into it, "
               "and skips the crash steps 6 and 7. Exit codes: 0 every check held, 1 a check failed or an "
               "error, 2 usage error, 130 interrupted.")
    parser.add_argument("--ns-host", help=f"use the running cluster whose name server is on this host "
                        f"(port: --ns-port or {DEFAULT_NS_PORT})")
    parser.add_argument("--ns-port", type=options.port(), help=f"use the running cluster whose name server listens "
                        f"on this port (host: --ns-host or {DEFAULT_NS_HOST})")
    parser.add_argument("--allow-crash", action="store_true",
                        help="on a running cluster, say why the crash steps still cannot run there "
                             "(they need replicas the demo started itself)")
    parser.add_argument("--pause", action="store_true", help="wait for Enter between steps (for a classroom)")
    parser.add_argument("--step", type=int, choices=range(1, 9), metavar="N",
                        help="run step N (1-8) only; it sets up what it needs itself")
    parser.add_argument("--record", metavar="FILE",
                        help="save the whole transcript to FILE (HTML when FILE ends in .html, text otherwise)")
    parser.add_argument("--no-color", action="store_true", help="no colours (also: the NO_COLOR variable)")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks and the cluster's logs on failure")
    return parser


# ------------------------------------------------------------- bookkeeping
@dataclass
class StepResult:
    number: int
    title: str
    shown: str
    status: str = "not run"  # passed | failed | skipped | not run
    checks: list = field(default_factory=list)  # (ok, text)
    seconds: float = 0.0
    note: str = ""

    @property
    def failures(self) -> list[str]:
        return [text for ok, text in self.checks if not ok]


#: number -> (title, what it shows, for the summary)
STEPS: dict[int, tuple[str, str]] = {
    1: ("The cluster", "the replicas, from the name server"),
    2: ("Pre-populate the store", "ten keys written in one transaction"),
    3: ("PUT, GET and DELETE through every replica", "5 PUTs, 5 GETs, 5 DELETEs, each replica agrees"),
    4: ("One write, message by message", "one write's two-phase commit, with times"),
    5: ("Concurrent conflicting writes", "one key written via 5 replicas at once"),
    6: ("A participant crashes before voting", "participant crash: clean abort, rejoin"),
    7: ("The coordinator crashes after its decision", "coordinator crash: in doubt, then recovery"),
    8: ("Summary", "this table"),
}


class StepFailed(Exception):
    """A step cannot go on (its reason is the failed check)."""


def _value(value: Optional[str]) -> Text:
    return Text("—", style="dim") if value is None else Text(json.dumps(value, ensure_ascii=False))


def _address(uri: str) -> str:
    return uri.rsplit("@", 1)[-1]


# ------------------------------------------------------------------- demo
class Demo:
    """Runs the steps against a cluster reached through ``connect(replica)``."""

    def __init__(self, console: Console, connect: Callable[[Optional[str]], Any], cluster: Any = None,
                 allow_crash: bool = False, pause: bool = False, debug: bool = False) -> None:
        self.console = console
        self.connect = connect
        self.cluster = cluster  # a LocalCluster when the demo started it, else None
        self.allow_crash = allow_crash
        self.pause = pause
        self.debug = debug
        self.results: dict[int, StepResult] = {}
        self.current: Optional[StepResult] = None
        self._clients: dict[Optional[str], Any] = {}
        self._populated = False

    # ------------------------------------------------------------ helpers
    def kv(self, replica: Optional[str] = None) -> Any:
        client = self._clients.get(replica)
        if client is None:
            client = self._clients[replica] = self.connect(replica)
        return client

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def names(self) -> list[str]:
        return sorted(self.kv().replicas(refresh=True))

    def statuses(self) -> list[dict]:
        return self.kv().status()

    def say(self, *parts: Any, style: str = "") -> None:
        self.console.print(Text.assemble(*parts, style=style), soft_wrap=True)

    def heading(self, text: str) -> None:
        self.say((text, "bold"))

    def action(self, text: str) -> None:
        self.say(("▸ ", "bold cyan"), text)

    def check(self, ok: bool, good: str, bad: Optional[str] = None) -> bool:
        """Print one check; a failed one fails the step (the demo goes on)."""
        text = good if ok else (bad or good)
        assert self.current is not None
        self.current.checks.append((bool(ok), text))
        if ok:
            self.say((f"{CHECK_OK} ", "bold green"), (text, "green"))
        else:
            self.say((f"{CHECK_FAILED} ", "bold red"), (text, "red"))
        return bool(ok)

    def require(self, ok: bool, good: str, bad: Optional[str] = None) -> None:
        """A check the rest of the step depends on: it stops the step when it fails."""
        if not self.check(ok, good, bad):
            raise StepFailed(bad or good)

    def wait_for(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        if self.cluster is not None:
            return self.cluster.wait_for(condition, timeout=timeout, what=what)
        deadline = time.monotonic() + timeout
        while True:
            try:
                result = condition()
                if result:
                    return result
            except RmiKvError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not hold within {timeout:g} s")
            time.sleep(0.05)

    def read_everywhere(self, key: str, names: Optional[list[str]] = None) -> dict[str, Optional[str]]:
        return {name: self.kv(name).get(key) for name in (names or self.names())}

    def settled(self, expected: int) -> Optional[list[dict]]:
        """Every replica reachable, serving, nothing in doubt or unacknowledged, equal data."""
        statuses = self.statuses()
        ok = (len(statuses) == expected
              and all(s["reachable"] and s["serving"] and not s["catching_up"] and not s["in_doubt"]
                      and not s["unacknowledged_commits"] for s in statuses)
              and len({s["digest"] for s in statuses}) == 1)
        return statuses if ok else None

    def status_table(self, statuses: list[dict], title: Optional[str] = None) -> Table:
        if title:
            self.heading(title)
        table = Table(box=box.SIMPLE_HEAD)
        for column in ("replica", "reachable", "keys", "digest", "in doubt"):
            table.add_column(column, justify="right" if column in ("keys",) else "left")
        for status in statuses:
            if not status.get("reachable"):
                table.add_row(status["name"], Text("no (down)", style="bold red"), "-", "-", "-")
                continue
            doubt = status.get("in_doubt") or []
            table.add_row(status["name"], Text("yes", style="green"), str(status["keys"]), status["digest"][:12],
                          Text(", ".join(doubt), style="bold yellow") if doubt else Text("none", style="dim"))
        return table

    def agree_check(self, statuses: list[dict], expected: int) -> None:
        reachable = [s for s in statuses if s.get("reachable")]
        self.check(len(reachable) == expected and len({s["digest"] for s in reachable}) == 1,
                   f"no replica diverged: all {expected} hold the same data (equal digests)",
                   f"replicas differ: digests {sorted({s['digest'][:12] for s in reachable})} "
                   f"over {len(reachable)} reachable of {expected}")

    def populate(self) -> str:
        """The course keys' initial values, in one transaction through the first replica."""
        first = self.names()[0]
        self.kv(first).transaction({key: f"initial {index}" for index, key in enumerate(COURSE_KEYS)})
        self._populated = True
        return first

    # -------------------------------------------------------------- steps
    def step1(self) -> None:
        names = self.names()
        expected = REPLICAS if self.cluster is not None else len(names)
        if self.cluster is not None:
            self.wait_for(lambda: self.settled(expected) and all(
                sorted(s["members"]) == names for s in self.statuses()), 15.0, "every replica ready")
        members = self.kv().replicas(refresh=True)
        statuses = {s["name"]: s for s in self.statuses()}
        self.heading(f"what the name server at {self.kv().ns_host}:{self.kv().ns_port} knows, and each replica says")
        table = Table(box=box.SIMPLE_HEAD)
        for column in ("replica", "registered as", "address", "state", "keys", "members"):
            table.add_column(column, justify="right" if column in ("keys", "members") else "left", no_wrap=True)
        for name in names:
            status = statuses.get(name, {"reachable": False})
            up = status.get("reachable")
            state = (Text("serving", style="green") if up and status["serving"]
                     else Text("refusing", style="yellow") if up else Text("unreachable", style="bold red"))
            table.add_row(name, f"rmi_kv.replica.{name}", _address(members[name]), state,
                          str(status["keys"]) if up else "-", str(len(status["members"])) if up else "-")
        self.console.print(table)
        if self.cluster is not None:
            self.check(len(names) == REPLICAS, f"{REPLICAS} replicas are registered in the name server",
                       f"{len(names)} replicas are registered, not {REPLICAS}")
        else:
            self.check(len(names) >= 1, f"{len(names)} replicas are registered in the name server",
                       "no replica is registered in the name server")
        self.check(all(statuses.get(n, {}).get("reachable") and statuses[n]["serving"] for n in names),
                   "every replica answers and serves requests",
                   "some replicas do not answer: " + ", ".join(n for n in names
                                                               if not statuses.get(n, {}).get("reachable")))
        self.check(all(sorted(statuses[n].get("members", [])) == names for n in names if n in statuses),
                   "every replica knows every member (writes go to all of them)",
                   "some replica's member list differs from the name server's")

    def step2(self) -> None:
        first = self.populate()
        self.action(f"one transaction through {first}: {len(COURSE_KEYS)} keys, {COURSE_KEYS[0]} .. {COURSE_KEYS[-1]}")
        names = self.names()
        table = Table(box=box.SIMPLE_HEAD)
        table.add_column("replica")
        table.add_column("course:* keys it lists", justify="right")
        table.add_column("course:0")
        table.add_column("course:9")
        listed = {}
        for name in names:
            kv = self.kv(name)
            listed[name] = kv.keys("course:", 100)
            table.add_row(name, str(len(listed[name])), _value(kv.get(COURSE_KEYS[0])), _value(kv.get(COURSE_KEYS[-1])))
        self.console.print(table)
        self.check(all(listed[n] == COURSE_KEYS for n in names),
                   f"every replica holds all {len(COURSE_KEYS)} keys, though only {first} was asked",
                   "some replica does not list the ten keys")
        self.agree_check(self.statuses(), len(names))

    def step3(self) -> None:
        if not self._populated:
            first = self.populate()
            self.action(f"set-up: the ten course keys written through {first} (as step 2 does)")
        names = self.names()
        n = len(names)
        ops = Table(box=box.SIMPLE_HEAD)
        for column in ("#", "request", "through", "answer", "ms"):
            ops.add_column(column, justify="right" if column in ("#", "ms") else "left")
        wrong: list[str] = []

        def run(label: str, through: str, call: Callable[[], Any], expected: Any, shown: Callable[[Any], str]) -> None:
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
            run(f"PUT {key} = {json.dumps(FRUITS[index])}", writer,
                lambda: self.kv(writer).put(key, FRUITS[index]), None, lambda _: "OK")
            expected[key] = FRUITS[index]
        for index in range(5):
            key, reader = COURSE_KEYS[index], names[(index + 2) % n]
            run(f"GET {key}", reader, lambda: self.kv(reader).get(key), FRUITS[index],
                lambda answer: json.dumps(answer) if answer is not None else "(none)")
        for index in range(5):
            key, deleter = COURSE_KEYS[5 + index], names[(index + 4) % n]
            run(f"DELETE {key}", deleter, lambda: self.kv(deleter).delete(key), True,
                lambda answer: "deleted" if answer else "not found")
            expected[key] = None
        self.console.print(ops)
        self.check(not wrong, "all 15 requests gave the expected answer", "; ".join(wrong))

        self.heading("every key, asked of every replica")
        grid = Table(box=box.SIMPLE_HEAD)
        grid.add_column("key")
        for name in names:
            grid.add_column(name)
        grid.add_column("agree")
        disagreeing = []
        for key in COURSE_KEYS:
            seen = self.read_everywhere(key, names)
            agree = set(seen.values()) == {expected[key]}
            if not agree:
                disagreeing.append(key)
            grid.add_row(key, *[_value(seen[name]) for name in names],
                         Text(CHECK_OK, style="green") if agree else Text(CHECK_FAILED, style="bold red"))
        self.console.print(grid)
        self.check(not disagreeing, f"every replica agrees on all {len(COURSE_KEYS)} keys "
                   f"({len(COURSE_KEYS) * n} reads)", "replicas disagree on " + ", ".join(disagreeing))
        self.agree_check(self.statuses(), n)

    def step4(self) -> None:
        names = self.names()
        coordinator = names[1 % len(names)]
        key, value = "demo:traced", f"traced at {time.strftime('%H:%M:%S')}"
        self.action(f"PUT {key} = {json.dumps(value)} through {coordinator}, traced")
        round_ = self.kv(coordinator).traced({key: value})
        events = round_["trace"]
        decision = next((e for e in events if e["message"] == "decision"), None)
        rows: list[dict] = []
        sent_noted = any(event["message"] == "doCommit" for event in events)
        for event in events:
            if event["message"] == "haveCommitted" and decision is not None and not sent_noted:
                # doCommit leaves right after the decision is forced; each answer is the acknowledgement
                rows.append({"at_ms": decision["at_ms"], "message": "doCommit", "participant": event["participant"],
                             "result": "sent right after the decision"})
            rows.append(event)
        order = {"canCommit": 0, "vote": 1, "decision": 2, "doAbort": 3, "doCommit": 3, "haveCommitted": 4}
        rows.sort(key=lambda event: order.get(event["message"], 5))  # stable: keeps the trace's order
        self.console.print(Text(f"txid {round_['txid']} (attempts: {round_['attempts']})", style="dim"))
        groups: dict[str, list[dict]] = {}
        for event in rows:
            groups.setdefault(phase_of(event["message"]), []).append(event)
        for index, (phase, group) in enumerate(groups.items()):
            self.say((phase, "bold cyan"))
            self.console.print(self._trace_table(group, coordinator, header=index == 0))
        asked = {e["participant"] for e in events if e["message"] == "canCommit"}
        yes = {e["participant"] for e in events if e["message"] == "vote" and e["result"].startswith("YES")}
        acked = {e["participant"] for e in events if e["message"] == "haveCommitted"}
        others = set(names) - {coordinator}
        self.check(asked == set(names), f"canCommit went to all {len(names)} replicas (the coordinator's own "
                   "participant too)", f"canCommit went to {sorted(asked)} only")
        self.check(yes == set(names), "every replica voted YES", f"YES votes from {sorted(yes)} only")
        self.check(decision is not None and decision["result"].startswith("COMMIT"),
                   "the coordinator decided COMMIT and forced it to its log", "no COMMIT decision in the trace")
        self.check(acked == others, "every other replica applied it and acknowledged (haveCommitted)",
                   f"acknowledgements from {sorted(acked)}, expected {sorted(others)}")
        seen = self.read_everywhere(key, names)
        self.check(set(seen.values()) == {value}, "every replica reads the new value",
                   f"replicas read {seen}")

    @staticmethod
    def _trace_table(events: list[dict], coordinator: str, header: bool) -> Table:
        table = Table(box=box.SIMPLE_HEAD if header else box.SIMPLE, show_header=header, show_edge=False,
                      padding=(0, 1, 0, 2))
        table.add_column("ms", justify="right", width=8, no_wrap=True)
        table.add_column("message", width=13, no_wrap=True)
        table.add_column("from → to", width=21, no_wrap=True)
        table.add_column("result")
        for event in events:
            message, participant = event["message"], event["participant"]
            result = event["result"].replace(", applied here in the same write", " (and applied here)")
            if message == "decision":
                route = participant
            elif message in ("canCommit", "doCommit", "doAbort"):
                route = f"{coordinator} → {participant}"
            else:
                route = f"{participant} → {coordinator}"
            style = ("green" if result.startswith(("YES", "COMMIT", "acknowledged"))
                     else "red" if result.startswith(("NO", "ABORT", "failed", "timeout")) else "")
            table.add_row(f"{event['at_ms']:.2f}", message, route, Text(result, style=style))
        return table

    def step5(self) -> None:
        names = self.names()
        writers = [names[i % len(names)] for i in range(max(5, len(names)))][:5]
        key = "demo:contested"
        self.kv(names[0]).put(key, "before the race")
        self.action(f"{len(writers)} clients write {key} at the same moment, through "
                    + ", ".join(writers))
        barrier = threading.Barrier(len(writers))
        outcomes: dict[int, tuple] = {}
        clients = [self.connect(name) for name in writers]

        def write(index: int) -> None:
            value = f"written via {writers[index]}"
            try:
                barrier.wait(10)
                started = time.perf_counter()
                try:
                    round_ = clients[index].traced({key: value})
                    outcomes[index] = ("committed", value, round_["attempts"], "", started)
                except TransactionAborted as error:
                    outcomes[index] = ("aborted", value, getattr(error, "attempts", 1), str(error), started)
                except OutcomeUnknown as error:
                    outcomes[index] = ("unknown", value, 1, str(error), started)
                outcomes[index] += ((time.perf_counter() - started) * 1000.0,)
            except Exception as error:  # reported as a failed check below
                outcomes[index] = ("error", value, 0, f"{type(error).__name__}: {error}", 0.0, 0.0)

        threads = [threading.Thread(target=write, args=(i,), daemon=True, name=f"demo-writer-{i}")
                   for i in range(len(writers))]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
        finally:
            for client in clients:
                client.close()
        table = Table(box=box.SIMPLE_HEAD)
        for column in ("through", "value written", "outcome", "attempts", "ms"):
            table.add_column(column, justify="right" if column in ("attempts", "ms") else "left")
        for index, name in enumerate(writers):
            outcome, value, attempts, detail, _, elapsed = outcomes.get(index, ("no answer", "", 0, "", 0, 0))
            style = {"committed": "green", "aborted": "yellow"}.get(outcome, "bold red")
            shown = outcome if outcome == "committed" else f"{outcome}: {detail}"
            table.add_row(name, json.dumps(value), Text(shown, style=style), str(attempts), f"{elapsed:.1f}")
        self.console.print(table)
        retried = sum(1 for o in outcomes.values() if o[2] > 1)
        self.say((f"{retried} of {len(writers)} writes met a locked key and retried (attempts above 1); "
                  "none waited for ever", "dim"))
        committed = {o[1] for o in outcomes.values() if o[0] == "committed"}
        definite = [o for o in outcomes.values() if o[0] in ("committed", "aborted")]
        self.check(len(definite) == len(writers), "every writer got a definite answer (committed or aborted, "
                   "nothing half-done)", "some writers got no definite answer")
        self.check(bool(committed), f"{len(committed)} of {len(writers)} writes committed",
                   "no write committed")
        seen = self.read_everywhere(key, names)
        self.heading(f"{key} on every replica afterwards")
        final = Table(box=box.SIMPLE_HEAD)
        final.add_column("replica")
        final.add_column("value")
        for name in names:
            final.add_row(name, _value(seen[name]))
        self.console.print(final)
        values = set(seen.values())
        winner = json.dumps(next(iter(values))) if len(values) == 1 else ""
        self.check(len(values) == 1, f"every replica holds the same value, the last write to commit ({winner})",
                   f"replicas hold different values: {seen}")
        self.check(values <= committed, "that value is one a committed write wrote (an aborted one left no trace)",
                   f"the value {values} is not one a committed writer wrote")
        statuses = self.statuses()
        self.check(not any(s.get("in_doubt") for s in statuses), "nothing is left in doubt on any replica",
                   "some replica still has transactions in doubt")
        self.agree_check(statuses, len(names))

    def _crash_steps_allowed(self) -> bool:
        if self.cluster is not None:
            return True
        assert self.current is not None
        if self.allow_crash:
            self.current.note = ("crash steps need replicas the demo started itself (to arm failpoints and "
                                 "restart them); they run on the embedded cluster: leave out --ns-host/--ns-port")
        else:
            self.current.note = ("the demo does not crash replicas of a cluster it did not start; leave out "
                                 "--ns-host/--ns-port to see this step")
        self.current.status = "skipped"
        self.say(("skipped: ", "bold yellow"), (self.current.note, "yellow"))
        return False

    def step6(self) -> None:
        if not self._crash_steps_allowed():
            return
        names = list(self.cluster.names)
        coordinator, victim = names[1], names[3]
        survivors = [name for name in names if name != victim]
        key = "demo:participant-crash"
        self.kv(coordinator).put(key, "before")
        self.action(f"{victim} restarts with the failpoint participant.before_prepare=crash")
        self.cluster.restart_replica(victim, failpoints=["participant.before_prepare=crash"])
        self.wait_for(lambda: self.settled(len(names)), 15.0, f"{victim} back in the cluster")
        self.action(f"PUT {key} = \"after\" through {coordinator}")
        try:
            self.kv(coordinator).put(key, "after")
            error = None
        except TransactionAborted as aborted:
            error = aborted
        if error is not None:
            self.say(("  client got TransactionAborted: ", "yellow"), str(error))
        self.require(error is not None and victim in getattr(error, "replicas", {}),
                     f"the client got TransactionAborted naming {victim}",
                     f"expected TransactionAborted naming {victim}, got {'success' if error is None else error}")
        code = self.cluster.replicas[victim].wait_exit(10)
        self.require(code is not None, f"{victim} crashed at its failpoint (exit status {code})",
                     f"{victim} did not crash")
        seen = self.read_everywhere(key, survivors)
        statuses = self.statuses()
        self.console.print(self.status_table(statuses, f"while {victim} is down"))
        self.say(("  reads of ", "dim"), (key, "dim"), (": ", "dim"),
                 ", ".join(f"{name} {json.dumps(value)}" for name, value in seen.items()))
        self.check(set(seen.values()) == {"before"}, f"reads through the {len(survivors)} other replicas still "
                   "work and show the old value: nothing was written", f"reads gave {seen}")
        self.check(not any(s.get("in_doubt") for s in statuses if s.get("reachable")),
                   "the abort was clean: no replica holds anything in doubt", "some replica is in doubt")
        other = survivors[-1]
        self.action(f"PUT {key} = \"while down\" through {other}")
        try:
            self.kv(other).put(key, "while down")
            refused = None
        except TransactionAborted as aborted:
            refused = aborted
        self.check(refused is not None and victim in getattr(refused, "replicas", {}),
                   f"writes wait for {victim}: this one aborts too (every member must vote)",
                   f"a write through {other} while {victim} is down should abort; got "
                   f"{'success' if refused is None else refused}")
        started = time.monotonic()
        self.action(f"{victim} restarts normally")
        self.cluster.start_replica(victim)
        self.wait_for(lambda: self.settled(len(names)), 20.0, f"{victim} rejoined")
        self.say(("  ", ""), (f"{victim} rejoined in {time.monotonic() - started:.1f} s", "dim"))
        self.action(f"PUT {key} = \"after the restart\" through {victim}")
        self.kv(victim).put(key, "after the restart")
        seen = self.read_everywhere(key, names)
        statuses = self.statuses()
        self.console.print(self.status_table(statuses, "after the restart"))
        self.check(set(seen.values()) == {"after the restart"},
                   f"{victim} is back: the new write committed on all {len(names)} replicas",
                   f"after the restart, reads gave {seen}")
        self.agree_check(statuses, len(names))

    def step7(self) -> None:
        if not self._crash_steps_allowed():
            return
        names = list(self.cluster.names)
        coordinator = names[0]
        others = names[1:]
        key, unrelated = "demo:coordinator-crash", COURSE_KEYS[0]
        self.kv(others[0]).put(key, "old")
        self.kv(others[0]).put(unrelated, "still readable")
        self.action(f"{coordinator} restarts with the failpoint coordinator.after_decision=crash")
        self.cluster.restart_replica(coordinator, failpoints=["coordinator.after_decision=crash"])
        self.wait_for(lambda: self.settled(len(names)), 15.0, f"{coordinator} back in the cluster")
        self.action(f"PUT {key} = \"new\" through {coordinator}")
        try:
            self.kv(coordinator).put(key, "new")
            error = None
        except OutcomeUnknown as unknown:
            error = unknown
        if error is not None:
            self.say(("  client got OutcomeUnknown: ", "yellow"), str(error))
        self.require(error is not None, "the client got OutcomeUnknown: no answer came, and rmi_kv never guesses",
                     "expected OutcomeUnknown, the write returned normally")
        code = self.cluster.replicas[coordinator].wait_exit(10)
        self.require(code is not None, f"{coordinator} crashed right after forcing COMMIT (exit status {code})",
                     f"{coordinator} did not crash")
        statuses = self.statuses()
        self.console.print(self.status_table(statuses, f"while {coordinator} is down"))
        waiting = [s["name"] for s in statuses if s.get("reachable") and s.get("in_doubt")]
        self.check(sorted(waiting) == sorted(others),
                   f"the {len(others)} participants voted YES and now wait in doubt: none may decide alone",
                   f"in doubt on {waiting}, expected {others}")
        value = self.kv(others[1]).get(unrelated)
        self.check(value == "still readable", f"only that key is held: other keys still read fine "
                   f"({unrelated} through {others[1]})", f"reading {unrelated} gave {value!r}")
        started = time.monotonic()
        self.action(f"{coordinator} restarts; its recovery finds the COMMIT record and sends doCommit again")
        self.cluster.start_replica(coordinator)

        def committed_everywhere():
            statuses = self.settled(len(names))
            if statuses and set(self.read_everywhere(key, names).values()) == {"new"}:
                return statuses
            return None

        statuses = self.wait_for(committed_everywhere, 20.0, "the write committed everywhere")
        elapsed = time.monotonic() - started
        seen = self.read_everywhere(key, names)
        self.heading(f"{elapsed:.1f} s after the restart")
        table = Table(box=box.SIMPLE_HEAD)
        for column in ("replica", key, "in doubt", "digest"):
            table.add_column(column)
        for status in statuses:
            table.add_row(status["name"], _value(seen[status["name"]]),
                          Text("none", style="dim") if not status["in_doubt"] else ", ".join(status["in_doubt"]),
                          status["digest"][:12])
        self.console.print(table)
        self.check(set(seen.values()) == {"new"}, f"recovery finished the commit: all {len(names)} replicas "
                   "hold \"new\"", f"reads gave {seen}")
        self.check(all(not s["in_doubt"] for s in statuses), "nothing is in doubt any more",
                   "some replica is still in doubt")
        self.agree_check(statuses, len(names))

    def step8(self) -> None:
        table = Table(box=box.SIMPLE_HEAD)
        for column in ("step", "what was shown", "checks", "result", "s"):
            table.add_column(column, justify="right" if column in ("step", "s") else "left")
        shown = [r for n, r in sorted(self.results.items()) if n != 8]
        for result in shown:
            passed = sum(1 for ok, _ in result.checks if ok)
            style = {"passed": "green", "failed": "bold red", "skipped": "yellow"}.get(result.status, "dim")
            mark = {"passed": CHECK_OK + " passed", "failed": CHECK_FAILED + " failed"}.get(result.status,
                                                                                         result.status)
            checks = f"{passed}/{len(result.checks)}" if result.checks else "-"
            table.add_row(str(result.number), result.shown, checks, Text(mark, style=style),
                          f"{result.seconds:.1f}" if result.status != "not run" else "-")
        if not shown:
            self.say("no other step ran: run the demo without --step to see them all")
        else:
            self.console.print(table)

    # ------------------------------------------------------------- runner
    def run(self, selected: Sequence[int]) -> list[StepResult]:
        for number in sorted(STEPS):
            title, shown = STEPS[number]
            self.results[number] = StepResult(number, title, shown)
        stopped = False
        for position, number in enumerate(selected):
            result = self.results[number]
            if stopped and number != 8:
                continue
            if self.pause and position:
                self._wait_for_enter(number)
            self.current = result
            self.console.print()
            self.console.print(Panel(Text(EXPLANATIONS[number]), title=f"Step {number} — {result.title}",
                                     title_align="left", border_style="cyan", expand=True))
            started = time.monotonic()
            result.status = "running"
            try:
                getattr(self, f"step{number}")()
            except StepFailed:
                stopped = True
            except TimeoutError as error:
                self.check(False, "", str(error))
                stopped = True
            except Exception as error:  # an rmi_kv error nobody expected here, or a bug: the step failed
                if self.debug:
                    self.console.print(Text("".join(traceback.format_exception(type(error), error,
                                                                               error.__traceback__)), style="dim"))
                self.check(False, "", f"unexpected {type(error).__name__}: {error}")
                stopped = True
            finally:
                result.seconds = time.monotonic() - started
            if result.status == "running":
                result.status = "failed" if result.failures else "passed"
            if stopped and number != 8:
                self.say(("the demo stops here: ", "bold red"), "the next steps depend on this one")
        return [self.results[n] for n in selected]

    def _wait_for_enter(self, number: int) -> None:
        try:
            self.console.input(f"[dim]press Enter for step {number}…[/]")
        except EOFError:
            self.pause = False


EXPLANATIONS = {
    1: "rmi_kv runs five replica servers. Each one registers a remote KeyValue object with the Pyro5 name server "
       "(the RMI registry of this system) as rmi_kv.replica.NAME. A client asks the name server where the "
       "replicas are, then talks to any one of them. Every replica holds a full copy of the data.",
    2: "Before the course scenario, ten keys go in through one replica, in one atomic transaction. Every write "
       "is a two-phase commit across all replicas, so afterwards each replica holds all ten, not just the one "
       "the client asked.",
    3: "A client may use any replica. Five PUTs, each through a different replica; five GETs, each through a "
       "different replica than the one that wrote the key; five DELETEs, each through yet another. Then every "
       "replica is asked for every key: they must all give the same answers.",
    4: "One PUT, traced. The replica the client asked is the coordinator. Phase 1: it sends canCommit to every "
       "replica; each locks the key, forces a PREPARED record to disk and votes. All voted YES, so the "
       "coordinator forces COMMIT to its log: that is the commit point. Phase 2: doCommit to every participant; "
       "each applies the write, forces it, and acknowledges (haveCommitted). Times are milliseconds since the "
       "write began, on the coordinator's clock.",
    5: "Several clients write the same key at the same moment, each through a different replica, so several "
       "coordinators compete. A participant locks a key for one transaction at a time: a canCommit that meets "
       "the lock gets a NO vote, that round aborts, and its coordinator retries after a short random wait (the "
       "older write waits, the younger retries: no deadlock). Each write commits or aborts as a whole, and the "
       "key ends with one value on every replica.",
    6: "A replica restarts with a failpoint: the next canCommit it receives kills it, before it writes anything. "
       "The coordinator gets no vote, decides ABORT and tells the others (doAbort): nothing is written anywhere, "
       "and the client learns which replica failed. Reads need only the replica asked, so they go on; writes "
       "need every member, so they abort until it is back. Then it restarts normally, rejoins, and the next "
       "write commits everywhere.",
    7: "The coordinator restarts with a failpoint that kills it right after it forces COMMIT to its log, before "
       "any doCommit leaves. The client gets no answer, so it hears 'outcome unknown': rmi_kv never guesses. "
       "The participants voted YES and may not decide alone: they wait in doubt, holding only that key. When "
       "the coordinator restarts, its recovery finds the COMMIT record and sends doCommit again (the "
       "participants also keep asking for the decision), and the write ends committed everywhere.",
    8: "What was shown, and whether every check held.",
}


# ------------------------------------------------------------------- main
def main(argv: Optional[Sequence[str]] = None) -> int:
    """``run_client.py --demo [options]`` / ``python -m rmi_kv.demo [options]``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageExit as usage:
        return usage.code
    except SystemExit as done:  # --help
        return int(done.code or 0)
    console = Console(record=True, no_color=args.no_color or None, highlight=False, emoji=False,
                      width=None if sys.stdout.isatty() else 100)
    previous = _terminate_as_interrupt()
    cluster = None
    demo: Optional[Demo] = None
    began = time.monotonic()
    code = EXIT_FAILED
    try:
        from rmi_kv.wire.client import KeyValueClient

        external = args.ns_host is not None or args.ns_port is not None
        if external:
            host, port = args.ns_host or DEFAULT_NS_HOST, args.ns_port or DEFAULT_NS_PORT
            console.print(Text.assemble(("rmi_kv demo", "bold"), f" on the running cluster at {host}:{port}"))
        else:
            from rmi_kv.server.cluster import LocalCluster

            cluster = LocalCluster(REPLICAS)
            console.print(Text.assemble(("rmi_kv demo", "bold"), f": starting a name server and {REPLICAS} "
                                        "replicas on 127.0.0.1 (ports chosen by the OS)"), soft_wrap=True)
            console.print(Text(f"data directory: {cluster.data_dir} (removed at the end)", style="dim"),
                          soft_wrap=True)
            started = time.monotonic()
            cluster.start()
            host, port = cluster.ns_host, cluster.ns_port
            console.print(Text(f"cluster up in {time.monotonic() - started:.1f} s; name server at {host}:{port}",
                               style="dim"))

        def connect(replica: Optional[str]) -> KeyValueClient:
            return KeyValueClient(host, port, replica=replica, timeout=10.0)

        demo = Demo(console, connect, cluster, allow_crash=args.allow_crash, pause=args.pause, debug=args.debug)
        demo.kv().replicas(refresh=True)  # a clear error now if the name server is not there
        selected = [args.step] if args.step else sorted(STEPS)
        results = demo.run(selected)
        code = _verdict(console, results, time.monotonic() - began)
    except KeyboardInterrupt:
        console.print(Text("interrupted: stopping the cluster", style="bold yellow"))
        code = EXIT_INTERRUPTED
    except Exception as error:
        if args.debug:
            console.print(Text("".join(traceback.format_exception(type(error), error, error.__traceback__)),
                               style="dim"))
            if cluster is not None:
                console.print(Text(cluster.logs(), style="dim"))
        reason = _describe(error)
        if isinstance(error, NameServerUnavailable) and cluster is None and demo is not None:
            reason = (f"no name server answers at {demo.kv().ns_host}:{demo.kv().ns_port}; start a cluster there "
                      "('python run_server.py --replicas 5 --with-nameserver'), or leave out --ns-host/--ns-port "
                      "and the demo starts its own")
        console.print(Text.assemble(("demo failed: ", "bold red"), reason), soft_wrap=True)
        code = EXIT_FAILED
    finally:
        signal_guard = _ignore_interrupts()
        try:
            if demo is not None:
                demo.close()
            if cluster is not None:
                cluster.stop()
                console.print(Text(f"stopped the embedded cluster and removed {cluster.data_dir}", style="dim"),
                              soft_wrap=True)
            if args.record:
                _save(console, args.record)
        finally:
            signal_guard()
            _restore(previous)
    return code


def _verdict(console: Console, results: list[StepResult], seconds: float) -> int:
    checks = sum(len(r.checks) for r in results)
    failed = [r for r in results if r.status == "failed" or r.status == "not run"]
    console.print()
    if not failed:
        skipped = [str(r.number) for r in results if r.status == "skipped"]
        extra = f" (skipped: step{'s' if len(skipped) > 1 else ''} {', '.join(skipped)})" if skipped else ""
        held = f"all {checks} checks held" if checks else "nothing failed"
        console.print(Text.assemble((f"{CHECK_OK} ", "bold green"),
                                    (f"{held}; the demo took {seconds:.1f} s{extra}", "bold green")))
        return EXIT_OK
    first = failed[0]
    reason = first.failures[0] if first.failures else "it did not run"
    console.print(Text.assemble((f"{CHECK_FAILED} ", "bold red"),
                                (f"demo failed at step {first.number}: {reason}", "bold red")), soft_wrap=True)
    return EXIT_FAILED


def _describe(error: BaseException) -> str:
    if isinstance(error, RmiKvError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _save(console: Console, path: str) -> None:
    try:
        if path.lower().endswith((".html", ".htm")):
            console.save_html(path)
        else:
            console.save_text(path)
    except OSError as error:
        print(f"cannot save the transcript to {path}: {error.strerror}", file=sys.stderr)
        return
    print(f"transcript saved to {path}", file=sys.stderr)


def _terminate_as_interrupt() -> Any:
    """SIGTERM cleans up like Ctrl-C (only the main thread may set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(_number: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def _restore(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _ignore_interrupts() -> Callable[[], None]:
    """While the cluster stops, a second Ctrl-C must not leave processes behind."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    saved = signal.signal(signal.SIGINT, signal.SIG_IGN), signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def restore() -> None:
        signal.signal(signal.SIGINT, saved[0])
        signal.signal(signal.SIGTERM, saved[1])

    return restore


if __name__ == "__main__":
    sys.exit(main())
