"""Results and failures as JSON documents (``--json``), one a line, for programs that read them."""
from __future__ import annotations

from typing import Any, Optional

from rmi_kv.cli.commands import Command
from rmi_kv.cli.execute import Result
from rmi_kv.cli.failures import describe, exit_code_of
from rmi_kv.errors import CompareFailed, TransactionAborted


def error_document(error: BaseException, *, command: Optional[Command] = None, **extra: Any) -> dict:
    """A failure as one JSON-ready dict (``--json``)."""
    reason, hint = describe(error)
    document: dict[str, Any] = {"ok": False}
    if command is not None:
        document["command"] = command.name
    document.update(error=type(error).__name__, message=str(error), exit_code=exit_code_of(error))
    if hint:
        document["hint"] = hint
    if isinstance(error, TransactionAborted):
        document["replicas"] = dict(getattr(error, "replicas", {}))
    if isinstance(error, CompareFailed):  # its own answer: which key held what
        document.update(compared=False, **{name: getattr(error, name, None) for name in ("key", "expected", "actual")})
    document.update(extra)
    return document


def result_document(result: Result, **extra: Any) -> dict:
    """A successful result as one JSON-ready dict (``--json``)."""
    document: dict[str, Any] = {"ok": result.ok, "command": result.command.name, **result.payload,
                                "latency_ms": round(result.latency_ms, 3)}
    if not result.ok:
        document["exit_code"] = result.exit_code
    if result.trace is not None:
        document["trace"] = result.trace
    document.update(extra)
    return document
