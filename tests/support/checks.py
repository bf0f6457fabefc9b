"""What "slower or aborted, never wrong" means, as code: a ledger of writes and convergence checks."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from rmi_kv.server.cluster import wait_for
from rmi_kv.errors import OutcomeUnknown, ReplicaUnavailable, TransactionAborted


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``condition()`` until it returns something true; AssertionError after ``timeout`` s."""
    try:
        return wait_for(condition, timeout, interval, what)
    except TimeoutError as error:
        raise AssertionError(str(error)) from None


def unsettled(statuses: list[dict], names: Iterable[str]) -> Optional[str]:
    """Why the replicas have not converged yet, or None when every one is reachable,
    serving, holds the same digest and has nothing in doubt or unacknowledged."""
    by_name = {status["name"]: status for status in statuses}
    missing = sorted(set(names) - set(by_name))
    if missing:
        return f"not registered: {missing}"
    for name in names:
        status = by_name[name]
        if not status.get("reachable"):
            return f"{name} unreachable: {status.get('error')}"
        if status.get("catching_up") or not status.get("serving"):
            return f"{name} not serving: {status.get('refusal')}"
        if status.get("in_doubt"):
            return f"{name} in doubt: {status['in_doubt']}"
        if status.get("unacknowledged_commits"):
            return f"{name} waits for acknowledgements: {status['unacknowledged_commits']}"
    digests = {name: by_name[name]["digest"] for name in names}
    if len(set(digests.values())) != 1:
        return f"digests differ: {digests}"
    return None


def settled(statuses: list[dict], names: Iterable[str]) -> bool:
    """True when converged; otherwise raises AssertionError saying why (for wait_until's report)."""
    reason = unsettled(statuses, names)
    if reason:
        raise AssertionError(reason)
    return True


class Ledger:
    """Every write a test made and what it was told: acknowledged, aborted (nothing
    written), or outcome unknown. Use a fresh key for every write."""

    def __init__(self) -> None:
        self.acknowledged: dict[str, str] = {}
        self.not_written: set[str] = set()
        self.unknown: dict[str, str] = {}

    def put(self, do_put: Callable[[str, str], Any], key: str, value: str) -> Optional[Exception]:
        """Run ``do_put(key, value)`` and record its outcome; returns the error it raised, if any."""
        assert key not in self.acknowledged and key not in self.not_written and key not in self.unknown, key
        try:
            do_put(key, value)
        except (TransactionAborted, ReplicaUnavailable) as error:  # both mean: nothing was written
            self.not_written.add(key)
            return error
        except OutcomeUnknown as error:
            self.unknown[key] = value
            return error
        self.acknowledged[key] = value
        return None

    def problems(self, names: Iterable[str], read: Callable[[str, str], Optional[str]]) -> list[str]:
        """Read every key on every replica; list what contradicts what the clients were told."""
        found = []
        names = list(names)
        for key, value in sorted(self.acknowledged.items()):
            for name in names:
                seen = read(name, key)
                if seen != value:
                    found.append(f"acknowledged {key}={value!r} reads {seen!r} on {name}")
        for key in sorted(self.not_written):
            for name in names:
                seen = read(name, key)
                if seen is not None:
                    found.append(f"aborted write of {key} is visible on {name}: {seen!r}")
        for key, value in sorted(self.unknown.items()):
            seen = {name: read(name, key) for name in names}
            if len(set(seen.values())) != 1 or set(seen.values()) - {None, value}:
                found.append(f"write of {key} with unknown outcome reads differently: {seen}")
        return found


def recorded(history: Any, kv: Any, key: str, kind: str, value: Optional[str], client: str) -> Any:
    """Run one put/delete/get on ``kv`` and record it in a linearizability
    ``history``: completed, or unknown on OutcomeUnknown. Any other error is
    recorded as failed (nothing happened) and raised for the caller to judge."""
    token = history.invoke(key, kind, value, client=client)
    try:
        if kind == "put":
            kv.put(key, value)
            history.complete(token)
        elif kind == "delete":
            kv.delete(key)
            history.complete(token)
        else:
            history.complete(token, kv.get(key))
    except OutcomeUnknown:
        history.unknown(token)
    except Exception:
        history.fail(token)
        raise
