"""Guards: what must hold for a transaction's writes to be made (compare-and-set).

A guard is ``(key, op, value)``: ``op`` is ``==`` or ``!=``, and a value of
None means the key has no value. Every participant checks a transaction's
guards when it votes, under the locks of the guarded keys (taken with the
written ones, and held until the transaction ends): every replica holds the
same committed entries for keys it has locked (write-all), so they all agree,
and a guard that holds at the vote still holds at the commit. A guard that
fails is the vote's answer (``CompareFailed``), not a lock conflict: the
coordinator aborts at once and does not try again.
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence, Tuple

from rmi_kv.errors import CompareFailed

#: (key, "==" or "!=", value or None for no value)
Guard = Tuple[str, str, Optional[str]]

EQUAL, NOT_EQUAL = "==", "!="
OPERATORS = (EQUAL, NOT_EQUAL)


def holds(guard: Guard, held: Optional[str]) -> bool:
    """Whether ``guard`` holds when its key holds ``held`` (None: no value)."""
    _, op, value = guard
    return (held == value) if op == EQUAL else (held != value)


def shown(value: Optional[str]) -> str:
    return "no value" if value is None else repr(value)


def first_failed(guards: Iterable[Guard], read: Callable[[str], Optional[str]]) -> Optional[tuple[Guard, Optional[str]]]:
    """The first guard that does not hold, with what its key holds; None when all do."""
    for guard in guards:
        held = read(guard[0])
        if not holds(guard, held):
            return guard, held
    return None


def compare_failed(guard: Guard, held: Optional[str], where: str) -> CompareFailed:
    """The error of a guard that did not hold at ``where``."""
    key, op, value = guard
    if value is None:
        wanted = "has no value" if op == EQUAL else "has a value"
    else:
        wanted = f"holds {value!r}" if op == EQUAL else f"does not hold {value!r}"
    return CompareFailed(f"compare failed: {key!r} holds {shown(held)}, and the guard was that it {wanted}; "
                         f"nothing was written", key=key, op=op, expected=value, actual=held, replica=where)


def keys_of(guards: Sequence[Guard]) -> list[str]:
    return [guard[0] for guard in guards]
