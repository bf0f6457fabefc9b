"""What a batch of protocol messages and its answers look like on the wire.

A batch travels as one JSON text inside the serpent message (one string for
serpent to read, and the standard library's JSON for the rest: several times
cheaper than serpent on nested data): a list of ``["canCommit", txid,
writes, coordinator, participants]``, ``["doCommit", txid]`` and
``["doAbort", txid]``. Its answers are a JSON list too, one per message in
order: ``[true, result]`` or ``[false, error]``, an error as its class name,
message and details (``rmi_kv.errors.error_as_dict``).
"""
from __future__ import annotations

import json
from typing import Any

from rmi_kv.core.batching import MAX_MESSAGES
from rmi_kv.core.messages import BATCHED, CAN_COMMIT
from rmi_kv.errors import InvalidRequest, RmiKvError, error_as_dict, error_from_dict


#: one encoder for every batch (json.dumps with options builds a new one per call)
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _compact_json(value: Any) -> str:
    return _COMPACT.encode(value)


def encode_batch(messages: list) -> str:
    """The text a batch of protocol messages travels as (see KeyValue.batch)."""
    return _compact_json(messages)


def decode_batch(text: Any) -> list:
    """The messages of a batch, or InvalidRequest."""
    if not isinstance(text, str):
        raise InvalidRequest(f"a batch is the JSON text of a list of protocol messages, not {type(text).__name__}")
    try:
        messages = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise InvalidRequest(f"a batch is the JSON text of a list of protocol messages: {error}") from None
    if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_MESSAGES:
        raise InvalidRequest(f"a batch is a list of 1 to {MAX_MESSAGES} protocol messages")
    return messages


def encode_answers(answers: list) -> str:
    """The text a batch's answers travel as: [true, result] or [false, error]
    per message, each error as its class name, message and details."""
    return _compact_json([[True, answer] if ok else [False, error_as_dict(answer)] for ok, answer in answers])


def decode_answers(text: Any, peer: str) -> list:
    """A batch's answers as (ok, result or exception) pairs."""
    try:
        answers = json.loads(text) if isinstance(text, str) else None
    except (ValueError, RecursionError):
        answers = None
    if not isinstance(answers, list):
        raise RmiKvError(f"{peer} sent malformed answers to a batch")
    return [(answer[0], answer[1] if answer[0] else error_from_dict(answer[1]))
            if isinstance(answer, list) and len(answer) == 2 and isinstance(answer[0], bool) else answer
            for answer in answers]


def protocol_message(message: Any) -> tuple[str, tuple]:
    """(name, arguments) of one message of a batch, or InvalidRequest."""
    if not isinstance(message, (list, tuple)) or not message or message[0] not in BATCHED:
        raise InvalidRequest(f"a batch message must start with one of {', '.join(BATCHED)}")
    allowed = BATCHED[message[0]]
    if len(message) - 1 not in allowed:
        raise InvalidRequest(f"{message[0]} takes {' or '.join(map(str, allowed))} argument(s), "
                             f"not {len(message) - 1}")
    return message[0], tuple(message[1:])


def message_size(message: str, args: tuple) -> int:
    """What a message's writes weigh (keys and values), for the batcher's size bound."""
    return sum(len(key) + len(value or "") for key, value in args[1].items()) if message == CAN_COMMIT else 0
