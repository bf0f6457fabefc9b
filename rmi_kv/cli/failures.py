"""What a failure means to the person who met it: a short reason, what to do, an exit code.

The console, the one-shot commands, script mode and the demo all describe
errors with these functions, so one failure reads the same everywhere.
"""
from __future__ import annotations

import traceback
from typing import Optional

from rmi_kv.errors import KeyInDoubt, NameServerUnavailable, ReplicaUnavailable, RmiKvError, TransactionAborted

#: words in an abort reason that mean the replica was down rather than busy
_DOWN_WORDS = ("unreachable", "did not", "not serving", "not a registered")


def exit_code_of(error: BaseException) -> int:
    """The one-shot exit code for ``error``: the rmi_kv class's, else 1."""
    return error.exit_code if isinstance(error, RmiKvError) else 1


def split_advice(message: str) -> tuple[str, Optional[str]]:
    """rmi_kv messages read 'what happened; what to do': split at the first
    '; ' outside parentheses."""
    depth = 0
    for index, char in enumerate(message):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and message.startswith("; ", index):
            return message[:index], message[index + 2:]
    return message, None


def unexpected(error: BaseException) -> str:
    """'unexpected KeyError: ...': an error nobody planned for (a bug, or a surprise from below)."""
    return f"unexpected {type(error).__name__}: {error}"


def describe(error: BaseException) -> tuple[str, Optional[str]]:
    """(reason, what to do) for an error, both short and for people."""
    if not isinstance(error, RmiKvError):
        return unexpected(error), "run again with --debug to see the traceback"
    reason, advice = split_advice(str(error))
    return reason, getattr(error, "hint", None) or advice or _class_hint(error)


def traceback_text(error: BaseException) -> str:
    """The Python traceback of ``error`` (shown only with --debug)."""
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


def _class_hint(error: RmiKvError) -> Optional[str]:
    if isinstance(error, TransactionAborted):
        down = sorted(name for name, why in getattr(error, "replicas", {}).items()
                      if any(word in str(why) for word in _DOWN_WORDS))
        if down:
            starts = ", ".join(f"'python run_server.py --name {name}'" for name in down)
            return f"start {' and '.join(down)} ({starts}), then try again"
        return "another write held the keys or a replica refused: try again"
    if isinstance(error, KeyInDoubt):
        return "its coordinator is down: start it again; 'status' lists the in-doubt transactions"
    if isinstance(error, ReplicaUnavailable):
        return "try again in a moment, or send the request to another replica"
    if isinstance(error, NameServerUnavailable):
        return "start it with 'python run_nameserver.py'"
    return None
