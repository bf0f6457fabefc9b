"""A write over the limits every replica keeps is refused by the client before it is sent: a
message too large for Pyro5 would be dropped on arrival, and the client could then only say that
the write may or may not have committed."""
from __future__ import annotations

import socket

import pytest

from rmi_kv.errors import InvalidRequest
from rmi_kv.wire.client import LIMITS, KeyValueClient


@pytest.fixture
def client():
    with socket.socket() as free:  # no name server there: a write that were sent would fail otherwise
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    made = KeyValueClient("127.0.0.1", port, timeout=1.0)
    yield made
    made.close()


def test_a_value_over_the_limit_is_a_usage_error_before_anything_is_sent(client):
    huge = "x" * (9 * 1024 * 1024)
    with pytest.raises(InvalidRequest, match="the limit is"):
        client.put("k", huge)
    with pytest.raises(InvalidRequest, match="the limit is"):
        client.transaction({"k": huge})
    with pytest.raises(InvalidRequest, match="the limit is"):
        client.cas("k", None, "y" * (LIMITS.max_value_bytes + 1))
    with pytest.raises(InvalidRequest, match="limit is"):
        client.put("k" * (LIMITS.max_key_bytes + 1), "v")
