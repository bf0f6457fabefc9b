"""Hypothesis sends a live replica malformed and hostile calls; each must get a
clear error (or a harmless answer), the replica must keep answering, and no
replica's data may change."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from Pyro5 import errors as pyro_errors
from Pyro5.api import Proxy

from rmi_kv.wire.codec import decode_answers
from rmi_kv.errors import RmiKvError

METHODS = ["get", "put", "delete", "transaction", "traced", "keys", "status", "ping", "canCommit", "doCommit",
           "doAbort", "batch", "haveCommitted", "getDecision", "announce", "forgetMember", "snapshotChunk",
           "verify", "digestReport", "rangeDigests", "rangeEntries", "watch", "scan", "count", "deletePrefix", "cas",
           "snapshotOpen", "snapshotPage", "snapshotClose",
           "no_such_method", "_private", "__init__", "__class__"]

scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=40) | st.binary(max_size=40)
           | st.text(alphabet=st.characters(min_codepoint=0x80, max_codepoint=0x10FFFF,
                                            blacklist_categories=("Cs",)), max_size=20)
           | st.sampled_from(["", "\x00", "\u202e", "a" * 5000, "k" * 1025, "v" * (1024 * 1024 + 1)]))
hostile = st.recursive(scalars, lambda inner: (st.lists(inner, max_size=4) | st.tuples(inner, inner)
                                               | st.dictionaries(st.text(max_size=8) | st.integers(), inner,
                                                                 max_size=4)), max_leaves=12)
made_up_txids = st.builds(lambda name, boot, counter, started: f"{name}:{boot}:{counter}:{started}",
                          st.sampled_from(["replica1", "replica3", "intruder", "x"]),
                          st.text(alphabet="0123456789abcdef", min_size=8, max_size=8),
                          st.integers(0, 10**6), st.integers(0, 2**62))
participant_calls = st.one_of(
    st.tuples(st.just("canCommit"), st.tuples(made_up_txids, st.dictionaries(st.text(min_size=1, max_size=5),
                                                                             st.none() | st.text(max_size=5),
                                                                             min_size=1, max_size=3),
                                              st.sampled_from(["intruder", "replica1"]),
                                              st.lists(st.sampled_from(["replica1", "replica2", "intruder"]))),
              ),
    st.tuples(st.sampled_from(["doCommit", "doAbort", "getDecision"]), st.tuples(made_up_txids)),
    st.tuples(st.just("haveCommitted"), st.tuples(made_up_txids, st.sampled_from(["replica2", "intruder"]))),
)
any_call = st.tuples(st.sampled_from(METHODS), st.lists(hostile, max_size=5).map(tuple)) | participant_calls
batch_messages = st.lists(participant_calls.map(lambda call: [call[0], *call[1]]) | hostile, min_size=1, max_size=6)
batch_texts = batch_messages.map(lambda messages: json.dumps(messages, default=repr)) | st.text(max_size=60) | hostile


@pytest.fixture(scope="module")
def target(shared_cluster):
    uri = shared_cluster.client().replicas()["replica2"]
    with shared_cluster.client() as kv:
        kv.put("fuzz:existing", "keep me")
        before = {status["name"]: status["digest"] for status in kv.status()}
    proxy = Proxy(uri)
    proxy._pyroTimeout = 20
    yield proxy
    proxy._pyroRelease()
    with shared_cluster.client() as kv:
        after = {status["name"]: status["digest"] for status in kv.status()}
        assert after == before, "a hostile call changed some replica's data"
        assert kv.get("fuzz:existing") == "keep me"


def clear(error: BaseException) -> bool:
    """An error a user can act on: ours, or Pyro5 refusing an unknown or private name."""
    if isinstance(error, RmiKvError):
        return bool(str(error))
    if isinstance(error, AttributeError):
        return "attribute" in str(error) or "method" in str(error)
    return False


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(call=any_call)
def test_hostile_calls_get_clear_errors_and_change_nothing(target, call):
    method, args = call
    try:
        target._pyroInvoke(method, args, {})
    except pyro_errors.CommunicationError as error:  # a dropped connection is not an answer
        target._pyroRelease()
        pytest.fail(f"{method}{args!r:.200} dropped the connection: {error}")
    except Exception as error:
        assert clear(error), f"{method}{args!r:.200} -> unclear {type(error).__name__}: {error}"
    assert target._pyroInvoke("ping", (), {}) == "replica2"


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=batch_texts)
def test_hostile_batches_answer_each_message_clearly(target, text):
    try:
        answers = target._pyroInvoke("batch", (text,), {})
    except pyro_errors.CommunicationError as error:
        target._pyroRelease()
        pytest.fail(f"batch {text!r:.200} dropped the connection: {error}")
    except Exception as error:  # the batch as a whole was refused
        assert clear(error), f"batch {text!r:.200} -> unclear {type(error).__name__}: {error}"
    else:
        messages = json.loads(text)
        answers = decode_answers(answers, "replica2")
        assert len(answers) == len(messages)
        for message, (ok, value) in zip(messages, answers):
            assert ok or clear(value), f"{message!r:.200} -> unclear {type(value).__name__}: {value}"
    assert target._pyroInvoke("ping", (), {}) == "replica2"


def test_forged_votes_are_resolved_and_nothing_stays_in_doubt(shared_cluster, target):
    # a well-formed canCommit naming a real coordinator prepares, and is aborted
    # once the replica asks that coordinator (which never started it)
    import time

    txid = f"replica1:deadbeef:1:{time.time_ns() // 1000}"
    epoch = target.status()["failover"]["epoch"]["number"]
    assert target.canCommit(txid, {"forged": "x"}, "replica1", shared_cluster.names, epoch) is True
    with shared_cluster.client("replica2") as kv:
        assert txid in next(s for s in kv.status() if s["name"] == "replica2")["in_doubt"]

    def nothing_in_doubt():
        with shared_cluster.client() as kv:
            return all(not status["in_doubt"] for status in kv.status())

    shared_cluster.wait_for(nothing_in_doubt, timeout=30, what="forged transactions resolved")
    with shared_cluster.client("replica2") as kv:
        assert kv.get("forged") is None
