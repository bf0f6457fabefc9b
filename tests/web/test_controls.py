"""The page's controls over a fake embedded cluster: bad input is a clear refusal that changes
nothing, and each process action does what it says."""
from __future__ import annotations

import signal

from rmi_kv.errors import TransactionAborted
from rmi_kv.web.controls import Controls


class Child:
    def __init__(self) -> None:
        self.signals: list[int] = []
        self.running = True

    def alive(self) -> bool:
        return self.running

    def signal(self, number: int) -> None:
        self.signals.append(number)


class Client:
    def __init__(self, log: list) -> None:
        self.log = log

    def put(self, key, value):
        self.log.append(("put", key, value))

    def transaction(self, writes, guards):
        if "fail" in writes:
            raise TransactionAborted("transaction aborted on every replica, nothing was written (replica3: down)",
                                     replicas={"replica3": "down"})
        self.log.append(("txn", writes, guards))

    def close(self):
        pass


class Cluster:
    names = ["replica1", "replica2", "replica3"]

    def __init__(self) -> None:
        self.replicas = {name: Child() for name in self.names}
        self.calls: list = []

    def client(self, replica=None, timeout=10.0):
        return Client(self.calls)

    def kill_replica(self, name):
        self.calls.append(("kill", name))
        self.replicas[name].running = False

    def restart_replica(self, name, failpoints=()):
        self.calls.append(("restart", name, list(failpoints)))
        self.replicas[name].running = True


def controls() -> tuple[Controls, Cluster, list]:
    cluster, said = Cluster(), []
    return Controls(cluster, lambda text, level: said.append(text)), cluster, said


def test_bad_input_is_refused_with_a_clear_message_and_nothing_done():
    control, cluster, said = controls()
    refusals = {
        ("put", frozenset({"value": "1"}.items())): "the field 'key' is empty: fill it in",
        ("crash", frozenset({"replica": "replica9"}.items())): "no replica named 'replica9': one of replica1, "
                                                                "replica2, replica3",
        ("explode", frozenset()): "unknown action 'explode'",
        ("txn", frozenset({"writes": "put a"}.items())): "put",
        ("failpoint", frozenset({"replica": "replica1", "failpoint": "nowhere"}.items())): "unknown failpoint 'nowhere'",
        ("failpoint", frozenset({"replica": "replica1", "failpoint": "participant.before_prepare",
                                 "failpoint_action": "explode"}.items())): "unknown failpoint action 'explode'",
        ("resume", frozenset({"replica": "replica2"}.items())): "replica2 is not paused",
    }
    for (action, form), message in refusals.items():
        result = control.run(action, dict(form))
        assert not result.ok and message in result.message, (action, result.message)
        assert result.error in ("InvalidRequest", "UsageError")
    assert cluster.calls == [] and said == []


def test_each_action_does_what_it_says():
    control, cluster, said = controls()
    assert control.run("put", {"key": "a", "value": "1", "replica": "replica2"}).message == \
        "PUT a = '1' through replica2: committed"
    assert control.run("txn", {"writes": "put a 2, delete b"}).ok
    aborted = control.run("txn", {"writes": "put fail 1"})
    assert not aborted.ok and aborted.error == "TransactionAborted" and aborted.details["replicas"] == {"replica3": "down"}
    assert control.run("pause", {"replica": "replica2"}).ok and control.process_state("replica2") == "paused"
    assert control.run("resume", {"replica": "replica2"}).ok and control.process_state("replica2") is None
    assert control.run("crash", {"replica": "replica3"}).ok and control.process_state("replica3") == "down"
    assert not control.run("pause", {"replica": "replica3"}).ok  # not running: restart it first
    again = control.run("crash", {"replica": "replica3"})
    assert not again.ok and "down already" in again.message  # not "crashed" twice
    assert control.run("pause", {"replica": "replica2"}).ok
    twice = control.run("pause", {"replica": "replica2"})
    assert not twice.ok and "paused already" in twice.message
    assert control.run("resume", {"replica": "replica2"}).ok
    armed = control.run("failpoint", {"replica": "replica1", "failpoint": "coordinator.after_decision"})
    assert armed.message == "replica1 restarted with the failpoint coordinator.after_decision=crash armed"
    assert cluster.calls == [("put", "a", "1"), ("txn", {"a": "2", "b": None}, ()), ("kill", "replica3"),
                             ("restart", "replica1", ["coordinator.after_decision=crash"])]
    assert cluster.replicas["replica2"].signals == [signal.SIGSTOP, signal.SIGCONT] * 2
    assert said == ["replica2 paused (SIGSTOP): it holds its connections and answers nothing",
                    "replica2 resumed (SIGCONT)", "replica3 crashed (killed with SIGKILL, as a power cut)",
                    "replica2 paused (SIGSTOP): it holds its connections and answers nothing",
                    "replica2 resumed (SIGCONT)", armed.message]
    assert set(control.describe()) == {"data", "process", "replicas", "failpoints"}


def test_a_long_value_is_cut_in_the_answer_line():
    control, cluster, _ = controls()
    answer = control.run("put", {"key": "big", "value": "y" * 100_000})
    assert answer.ok and "(100,000 characters)" in answer.message and len(answer.message) < 200
    assert cluster.calls == [("put", "big", "y" * 100_000)]  # the whole value was written
