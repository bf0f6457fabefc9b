"""Checks at the remote boundary: every argument is hostile until proven fine.

Each check raises InvalidRequest with a message that names the rule broken.
"""
from __future__ import annotations

import re
from typing import Any, Optional

from rmi_kv.config import Limits
from rmi_kv.core import txid as txids
from rmi_kv.errors import InvalidRequest

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: the most keys one ``keys`` call returns
MAX_LIMIT = 10000


def utf8_size(text: str, what: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidRequest(f"{what} is not valid Unicode text (it holds a lone surrogate)") from None


def check_key(key: Any, limits: Limits) -> str:
    if not isinstance(key, str):
        raise InvalidRequest(f"a key must be a string, not {type(key).__name__}")
    if not key:
        raise InvalidRequest("a key must not be empty")
    size = utf8_size(key, "the key")
    if size > limits.max_key_bytes:
        raise InvalidRequest(f"key is {size} bytes long; the limit is {limits.max_key_bytes} bytes (UTF-8)")
    return key


def check_value(value: Any, limits: Limits) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"a value must be a string, not {type(value).__name__}")
    size = utf8_size(value, "the value")
    if size > limits.max_value_bytes:
        raise InvalidRequest(f"value is {size} bytes; the limit is {limits.max_value_bytes} bytes (UTF-8)")
    return value


def check_writes(writes: Any, limits: Limits) -> dict[str, Optional[str]]:
    """A transaction's writes: a non-empty dict of key -> value, or None to delete."""
    if not isinstance(writes, dict):
        raise InvalidRequest(f"writes must be a dict of key -> value (or None to delete), not {type(writes).__name__}")
    if not writes:
        raise InvalidRequest("a transaction needs at least one write")
    if len(writes) > limits.max_keys_per_transaction:
        raise InvalidRequest(f"transaction has {len(writes)} keys; the limit is "
                             f"{limits.max_keys_per_transaction} keys per transaction")
    total = 0
    for key, value in writes.items():
        check_key(key, limits)
        total += utf8_size(key, "a key")
        if value is not None:
            check_value(value, limits)
            total += utf8_size(value, "a value")
    if total > limits.max_transaction_bytes:
        raise InvalidRequest(f"transaction holds {total} bytes of keys and values; the limit is "
                             f"{limits.max_transaction_bytes} bytes")
    return dict(writes)


def check_guards(guards: Any, limits: Limits) -> tuple:
    """A transaction's guards: a list of (key, "==" or "!=", value or None)."""
    if guards is None:
        return ()
    if not isinstance(guards, (list, tuple)) or len(guards) > limits.max_keys_per_transaction:
        raise InvalidRequest(f"guards must be a list of at most {limits.max_keys_per_transaction} "
                             f"(key, '==' or '!=', value or None)")
    checked = []
    for guard in guards:
        if not isinstance(guard, (list, tuple)) or len(guard) != 3 or guard[1] not in ("==", "!="):
            raise InvalidRequest(f"a guard is (key, '==' or '!=', value or None), not {str(guard)[:80]!r}")
        key, op, value = guard
        check_key(key, limits)
        if value is not None:
            check_value(value, limits)
        checked.append((key, op, value))
    return tuple(checked)


def check_txid(txid: Any) -> str:
    if not txids.is_valid(txid):
        raise InvalidRequest(f"malformed transaction id {str(txid)[:80]!r}: expected {txids.FORMAT}")
    return txid


def check_name(name: Any, what: str = "replica name") -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidRequest(f"invalid {what} {str(name)[:80]!r}: use 1 to 64 letters, digits, '_' or '-'")
    return name


def check_uri(uri: Any) -> str:
    """A member's Pyro5 URI, as a replica announces it."""
    if not isinstance(uri, str) or len(uri) > 1024 or not uri.startswith("PYRO:") or "@" not in uri:
        raise InvalidRequest(f"invalid member URI {str(uri)[:80]!r}: expected PYRO:OBJECT@HOST:PORT")
    return uri


def check_participants(participants: Any) -> list[str]:
    if participants is None:
        return []
    if not isinstance(participants, (list, tuple)) or len(participants) > 1000:
        raise InvalidRequest("participants must be a list of replica names")
    return [check_name(name, "participant name") for name in participants]


def check_epoch_number(number: Any, what: str = "epoch") -> int:
    if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < 2 ** 62:
        raise InvalidRequest(f"{what} must be a whole number from 0, not {str(number)[:40]!r}")
    return number


def check_plan(plan: Any) -> dict:
    """An epoch plan as ``installEpoch`` carries it (``core.failover.plan_as_dict``)."""
    if not isinstance(plan, dict):
        raise InvalidRequest("an epoch plan must be a dict")
    source = plan.get("source")
    return {"number": check_epoch_number(plan.get("number")),
            "members": check_participants(plan.get("members")),
            "newcomers": check_participants(plan.get("newcomers")),
            "source": None if source is None else check_name(source, "source name"),
            "settled": check_settled(plan.get("settled")),
            "proposer": None if plan.get("proposer") is None else check_name(plan.get("proposer"), "proposer name")}


def check_settled(settled: Any) -> dict:
    """txid -> "commit" | "abort", as an epoch plan carries the outcomes it settles."""
    if settled is None:
        return {}
    if not isinstance(settled, dict) or len(settled) > 100_000:
        raise InvalidRequest("settled outcomes must be a dict of txid to commit or abort")
    for txid, outcome in settled.items():
        check_txid(txid)
        if outcome not in ("commit", "abort"):
            raise InvalidRequest(f"a settled outcome is commit or abort, not {str(outcome)[:20]!r}")
    return dict(settled)


def check_limit(limit: Any, most: int = MAX_LIMIT) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= most:
        raise InvalidRequest(f"limit must be a whole number from 1 to {most}")
    return limit


def check_prefix(prefix: Any, limits: Limits) -> str:
    if not isinstance(prefix, str):
        raise InvalidRequest(f"a prefix must be a string, not {type(prefix).__name__}")
    if utf8_size(prefix, "the prefix") > limits.max_key_bytes:
        raise InvalidRequest(f"prefix is longer than the key limit of {limits.max_key_bytes} bytes")
    return prefix


#: the longest a watch call waits for a change (it holds a connection's worker meanwhile)
MAX_WATCH_WAIT = 30.0


def check_wait(wait: Any, most: float = MAX_WATCH_WAIT) -> float:
    """Seconds a long poll may wait: a number above 0, at most ``most``."""
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 < wait <= most:
        raise InvalidRequest(f"wait must be a number of seconds above 0 and at most {most:g}")
    return float(wait)


def check_cursor(cursor: Any, what: str = "watch") -> Optional[tuple[str, int]]:
    """A cursor of a ``what`` answer (``{"boot": str, "seq": int}``) as (boot, seq), or None (from now)."""
    if cursor is None:
        return None
    if not isinstance(cursor, dict) or set(cursor) != {"boot", "seq"}:
        raise InvalidRequest(f'a {what} cursor is {{"boot": ..., "seq": ...}}, as a {what} answer\'s "next"')
    boot, seq = cursor["boot"], cursor["seq"]
    if not isinstance(boot, str) or not 1 <= len(boot) <= 64:
        raise InvalidRequest(f"a {what} cursor's boot is the text a {what} answer gave")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise InvalidRequest(f"a {what} cursor's seq is a whole number from 0")
    return boot, seq


SNAPSHOT_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


def check_snapshot_id(snapshot_id: Any) -> str:
    """A snapshot session id, as ``snapshotOpen`` hands them out (32 hex digits)."""
    if not isinstance(snapshot_id, str) or SNAPSHOT_ID_PATTERN.fullmatch(snapshot_id) is None:
        raise InvalidRequest("a snapshot id is the 32 hex digits snapshotOpen answered with")
    return snapshot_id
