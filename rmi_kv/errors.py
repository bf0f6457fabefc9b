"""The one exception hierarchy of rmi_kv.

Every class here survives the trip over Pyro5: ``rmi_kv.wire.pyro`` teaches
the serpent serializer to rebuild them, so a client catches the same class the
replica raised. Messages say what happened and what the user can do.
Inside a batch of protocol messages, whose answers travel as JSON text, an
error travels as ``error_as_dict`` and is rebuilt by ``error_from_dict``.
"""
from __future__ import annotations

from typing import Any


class RmiKvError(Exception):
    """Base class of every error rmi_kv raises on purpose."""

    #: exit code of the one-shot client for this kind of failure
    exit_code = 1

    def __init__(self, message: str = "", **details: Any) -> None:
        super().__init__(message)
        self.message = message
        for key, value in details.items():
            setattr(self, key, value)

    def __str__(self) -> str:
        return self.message


class InvalidRequest(RmiKvError):
    """The request breaks a rule (type, size, limit); nothing was changed."""

    exit_code = 2


class KeyNotFound(RmiKvError):
    """The key has no value (used by front ends; the API returns None)."""

    exit_code = 1


class TransactionAborted(RmiKvError):
    """The write was aborted on every replica; nothing was written.

    ``replicas`` maps each replica that voted no or could not vote to the
    reason, so the user knows which replica to look at.
    """

    exit_code = 3

    def __init__(self, message: str = "", replicas: dict | None = None, **details: Any) -> None:
        super().__init__(message, replicas=dict(replicas or {}), **details)


class ReplicaUnavailable(RmiKvError):
    """The replica could not be reached before the request was sent, or is
    not serving right now; nothing was written."""

    exit_code = 4


class NameServerUnavailable(RmiKvError):
    """The Pyro5 name server could not be reached."""

    exit_code = 4


class OutcomeUnknown(RmiKvError):
    """The request was sent but no answer came: the write may or may not
    have committed. Read the key to find out; never assume either."""

    exit_code = 5


class KeyInDoubt(RmiKvError):
    """The key is held by a transaction whose outcome this replica does not
    know yet (its coordinator is down); reads of it wait until it is decided."""

    exit_code = 4


class ClusterUnhealthy(RmiKvError):
    """Every member was asked and at least one is not healthy: unreachable,
    not serving, catching up, holding a transaction in doubt for longer than
    a moment, or holding different data; with failover on, also outside the
    epoch, without a read lease, or removed; or fewer than a majority of the
    replicas answer (``rmi_kv.cli.health``). ``status`` and ``health`` exit
    with this code; their output names each member and why."""

    exit_code = 6


class PermissionDenied(RmiKvError):
    """The caller's certificate does not allow this operation."""

    exit_code = 2


class MembershipChanged(RmiKvError):
    """A participant knows of a member the coordinator left out; the
    coordinator reloads the member list and tries again."""

    exit_code = 3


class EpochChanged(MembershipChanged):
    """A participant is in another epoch than the coordinator's transaction
    (or is changing epochs): the coordinator tries again in the current one."""


class AlreadyRunning(RmiKvError):
    """A replica would start on a data directory or under a name that a
    running replica holds; it refuses, and the running one is unharmed."""

    exit_code = 7


class CompareFailed(RmiKvError):
    """A guard of a transaction (compare-and-set) did not hold: nothing was
    written. ``key``, ``expected``/``op`` and ``actual`` say which and why."""

    exit_code = 8


class SnapshotDamaged(InvalidRequest):
    """A snapshot file is not one, is damaged, or does not match its digest; nothing was restored."""


class InjectedFault(RmiKvError):
    """A failpoint armed with ``error`` fired (tests and the demo only)."""

    exit_code = 3


ALL_ERRORS: tuple[type[RmiKvError], ...] = (
    RmiKvError,
    InvalidRequest,
    KeyNotFound,
    TransactionAborted,
    ReplicaUnavailable,
    NameServerUnavailable,
    OutcomeUnknown,
    KeyInDoubt,
    ClusterUnhealthy,
    InjectedFault,
    MembershipChanged,
    EpochChanged,
    PermissionDenied,
    AlreadyRunning,
    CompareFailed,
    SnapshotDamaged,
)


def error_as_dict(error: RmiKvError) -> dict:
    """A plain form of ``error`` (class name, message, details) for JSON."""
    import json

    details = {}
    for name, value in vars(error).items():
        if name == "message" or name.startswith("_"):
            continue
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            value = str(value)
        details[name] = value
    return {"class": type(error).__name__, "message": error.message, "details": details}


def error_from_dict(data: Any) -> RmiKvError:
    """The error ``error_as_dict`` described (an RmiKvError for a class it does not know)."""
    if not isinstance(data, dict):
        return RmiKvError(f"malformed error: {str(data)[:200]}")
    classes = {cls.__name__: cls for cls in ALL_ERRORS}
    cls = classes.get(data.get("class"), RmiKvError)
    details = data.get("details") if isinstance(data.get("details"), dict) else {}
    error = cls.__new__(cls)
    RmiKvError.__init__(error, str(data.get("message", "")),
                        **{name: value for name, value in details.items()
                           if isinstance(name, str) and name.isidentifier() and not name.startswith("_")})
    return error

