"""Failpoint specs and actions; argument checks at the remote boundary."""
import time

import pytest

from rmi_kv.config import Limits
from rmi_kv.core import txid as txids
from rmi_kv.core.coordinator import Coordinator
from rmi_kv.errors import InjectedFault, InvalidRequest
from rmi_kv.core.failpoints import ENVIRONMENT_VARIABLE, NAMES, Action, Failpoints, parse_action, parse_specs
from rmi_kv.core.validation import check_key, check_name, check_txid, check_value, check_writes


# -------------------------------------------------------------- failpoints
@pytest.mark.parametrize("text, expected", [
    ("crash", Action("crash")),
    ("error", Action("error")),
    ("delay:250", Action("delay", delay_ms=250.0)),
    ("delay:0", Action("delay", delay_ms=0.0)),
    ("delay:1.5", Action("delay", delay_ms=1.5)),
    ("once:error", Action("error", once=True)),
    ("once:delay:10", Action("delay", delay_ms=10.0, once=True)),
])
def test_parse_action_accepts(text, expected):
    assert parse_action(text) == expected


@pytest.mark.parametrize("text", [
    "", "boom", "Crash", "delay", "delay:", "delay:abc", "delay:-1", "delay:nan", "once:", "once:once:error",
    "error:5", " crash",
])
def test_parse_action_rejects(text):
    with pytest.raises(InvalidRequest) as caught:
        parse_action(text)
    message = str(caught.value)
    assert repr(text) in message
    assert "crash, error or delay:MS" in message


@pytest.mark.parametrize("text", ["delay:inf", "delay:1e400", "delay:infinity"])
def test_parse_action_rejects_an_endless_delay(text):
    """A delay that time.sleep cannot take must be refused when parsed, not
    blow up with OverflowError when the failpoint fires."""
    with pytest.raises(InvalidRequest):
        parse_action(text)


def test_parse_specs_reads_lists_and_several_specs():
    points = parse_specs(["participant.before_prepare=error, coordinator.mid_commit=once:crash",
                          "", " , ", "recovery.mid_recovery=delay:5"])
    assert points == {
        "participant.before_prepare": Action("error"),
        "coordinator.mid_commit": Action("crash", once=True),
        "recovery.mid_recovery": Action("delay", delay_ms=5.0),
    }
    assert parse_specs([]) == {}
    assert parse_specs(["participant.after_prepare=error", "participant.after_prepare=delay:1"]) == \
        {"participant.after_prepare": Action("delay", delay_ms=1.0)}  # the last one wins


def test_every_known_name_parses():
    assert set(parse_specs([",".join(f"{name}=error" for name in NAMES)])) == set(NAMES)


def test_parse_specs_rejects_a_missing_action():
    with pytest.raises(InvalidRequest, match="NAME=ACTION") as caught:
        parse_specs(["participant.before_prepare"])
    assert "participant.before_prepare" in str(caught.value)


def test_parse_specs_rejects_an_unknown_name():
    with pytest.raises(InvalidRequest, match="unknown failpoint 'nowhere'") as caught:
        parse_specs(["nowhere=crash"])
    assert "participant.before_prepare" in str(caught.value)  # lists the known ones


def test_parse_specs_rejects_a_bad_action():
    with pytest.raises(InvalidRequest, match="unknown failpoint action 'explode'"):
        parse_specs(["participant.before_prepare=explode"])


def test_from_sources_reads_the_environment_and_the_flags():
    failpoints = Failpoints.from_sources(["coordinator.before_decision=delay:1"],
                                         environ={ENVIRONMENT_VARIABLE: "participant.before_ack=error"})
    assert failpoints.describe() == {"participant.before_ack": "error", "coordinator.before_decision": "delay"}
    assert Failpoints.from_sources([], environ={}).describe() == {}


def test_error_action_raises_every_time():
    failpoints = Failpoints(parse_specs(["participant.before_commit=error"]))
    for _ in range(3):
        with pytest.raises(InjectedFault, match="participant.before_commit"):
            failpoints.hit("participant.before_commit")
    failpoints.hit("participant.before_ack")  # other names do nothing
    assert failpoints.armed("participant.before_commit")


def test_once_fires_only_once():
    failpoints = Failpoints(parse_specs(["participant.before_commit=once:error"]))
    assert failpoints.armed("participant.before_commit")
    with pytest.raises(InjectedFault):
        failpoints.hit("participant.before_commit")
    assert not failpoints.armed("participant.before_commit")
    failpoints.hit("participant.before_commit")
    failpoints.hit("participant.before_commit")


def test_delay_action_waits():
    failpoints = Failpoints(parse_specs(["participant.before_ack=delay:100"]))
    started = time.monotonic()
    failpoints.hit("participant.before_ack")
    assert time.monotonic() - started >= 0.095


def test_once_delay_waits_only_the_first_time():
    failpoints = Failpoints(parse_specs(["participant.before_ack=once:delay:300"]))
    failpoints.hit("participant.before_ack")
    started = time.monotonic()
    failpoints.hit("participant.before_ack")
    assert time.monotonic() - started < 0.25


def test_no_failpoints_costs_nothing_and_does_nothing():
    failpoints = Failpoints()
    for name in NAMES:
        failpoints.hit(name)
        assert not failpoints.armed(name)
    assert failpoints.describe() == {}


# -------------------------------------------------------------- validation
SMALL = Limits(max_key_bytes=8, max_value_bytes=16, max_keys_per_transaction=3, max_transaction_bytes=40)


def test_check_key_accepts_good_keys():
    assert check_key("k", SMALL) == "k"
    assert check_key("12345678", SMALL) == "12345678"  # exactly at the limit
    assert check_key("éééé", SMALL) == "éééé"  # 8 bytes in UTF-8


@pytest.mark.parametrize("key, words", [
    (5, ["string", "int"]),
    (None, ["string", "NoneType"]),
    (b"bytes", ["string", "bytes"]),
    ("", ["empty"]),
    ("123456789", ["9 bytes", "limit is 8 bytes"]),
    ("ééééé", ["10 bytes", "limit is 8 bytes", "UTF-8"]),  # 5 characters, but 10 bytes
    ("\ud800", ["surrogate"]),
])
def test_check_key_rejects(key, words):
    with pytest.raises(InvalidRequest) as caught:
        check_key(key, SMALL)
    for word in words:
        assert word in str(caught.value)


def test_check_value_accepts_good_values():
    assert check_value("", SMALL) == ""
    assert check_value("x" * 16, SMALL) == "x" * 16


@pytest.mark.parametrize("value, words", [
    (None, ["string", "NoneType"]),
    (3.5, ["string", "float"]),
    ("x" * 17, ["17 bytes", "limit is 16 bytes"]),
    ("\U0001F600" * 5, ["20 bytes", "limit is 16 bytes"]),
    ("ok\udfff", ["surrogate"]),
])
def test_check_value_rejects(value, words):
    with pytest.raises(InvalidRequest) as caught:
        check_value(value, SMALL)
    for word in words:
        assert word in str(caught.value)


def test_check_writes_accepts_puts_and_deletes():
    writes = {"a": "1", "b": None, "c": "x" * 16}
    assert check_writes(writes, SMALL) == writes


@pytest.mark.parametrize("writes, words", [
    ([("a", "1")], ["dict", "list"]),
    (None, ["dict", "NoneType"]),
    ({}, ["at least one write"]),
    ({"a": "1", "b": "2", "c": "3", "d": "4"}, ["4 keys", "limit is 3 keys per transaction"]),
    ({1: "1"}, ["key must be a string", "int"]),
    ({"": "1"}, ["empty"]),
    ({"123456789": "1"}, ["limit is 8 bytes"]),
    ({"a": 1}, ["value must be a string", "int"]),
    ({"a": "x" * 17}, ["limit is 16 bytes"]),
    ({"a": "\ud800"}, ["surrogate"]),
    ({"\udc80": "1"}, ["surrogate"]),
    ({"a": "x" * 16, "b": "x" * 16, "c": "x" * 10}, ["45 bytes", "limit is 40 bytes"]),
])
def test_check_writes_rejects(writes, words):
    with pytest.raises(InvalidRequest) as caught:
        check_writes(writes, SMALL)
    for word in words:
        assert word in str(caught.value)


def test_default_limits_are_generous_but_bounded():
    limits = Limits()
    check_key("k" * limits.max_key_bytes, limits)
    with pytest.raises(InvalidRequest):
        check_key("k" * (limits.max_key_bytes + 1), limits)
    check_writes({f"k{index}": "v" for index in range(limits.max_keys_per_transaction)}, limits)
    with pytest.raises(InvalidRequest, match="keys per transaction"):
        check_writes({f"k{index}": "v" for index in range(limits.max_keys_per_transaction + 1)}, limits)


@pytest.mark.parametrize("txid", ["c0:0123abcd:1:1764134953000000",
                                  "replica_1-a:ffffffff:9223372036854775807:99999999999999999999",
                                  "r" * 64 + ":00000000:0:0"])
def test_check_txid_accepts(txid):
    assert check_txid(txid) == txid


def test_check_txid_accepts_what_the_coordinator_makes(make_storage):
    coordinator = Coordinator("replica-1", make_storage())
    try:
        for _ in range(3):
            txid = coordinator.new_txid()
            assert check_txid(txid) == txid
            assert check_txid(coordinator.new_txid(started_us=0)).endswith(":0")
            assert txids.coordinator_of(txid) == "replica-1"
    finally:
        coordinator.close()


@pytest.mark.parametrize("txid", [
    None, 17, b"c0:0123abcd:1:5", "", "c0", "c0:0123abcd", "c0:0123abcd:1", "c0:0123ABCD:1:5", "c0:0123abc:1:5",
    "c0:0123abcd:x:5", "c0:0123abcd:1:x", "c 0:0123abcd:1:5", "c0:0123abcd:1:5:6", "r" * 65 + ":00000000:0:0",
    "c0:0123abcd:" + "9" * 20 + ":5", "c0:0123abcd:1:" + "9" * 21,
    "c0:0123abcd:1:5\n", "\nc0:0123abcd:1:5", "c0:0123abcd:1:5 ",
])
def test_check_txid_rejects(txid):
    with pytest.raises(InvalidRequest, match="COORDINATOR:BOOTID:COUNTER:STARTED"):
        check_txid(txid)


def test_check_txid_message_is_bounded():
    with pytest.raises(InvalidRequest) as caught:
        check_txid("x" * 10_000)
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize("name", ["r1\n", "", "r 1", "r" * 65, None, "r1/x"])
def test_check_name_rejects(name):
    with pytest.raises(InvalidRequest, match="replica name"):
        check_name(name)
