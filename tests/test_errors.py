"""Every rmi_kv error survives Pyro5's serpent serializer as the same class."""
import inspect

import pytest
from Pyro5.serializers import serializers

from rmi_kv import errors
from rmi_kv.wire.codec import decode_answers, encode_answers
from rmi_kv.wire.pyro import configure_pyro


@pytest.fixture(scope="module")
def serpent():
    configure_pyro()
    return serializers["serpent"]


def roundtrip(serializer, error):
    return serializer.loads(serializer.dumps(error))


def test_all_errors_lists_every_error_class():
    defined = {cls for _, cls in inspect.getmembers(errors, inspect.isclass)
               if issubclass(cls, errors.RmiKvError) and cls.__module__ == errors.__name__}
    assert defined == set(errors.ALL_ERRORS)


@pytest.mark.parametrize("cls", errors.ALL_ERRORS, ids=lambda cls: cls.__name__)
def test_error_roundtrips_with_message_and_attributes(serpent, cls):
    message = f"{cls.__name__}: r2 said 'no' — ünïcödé \U0001F600"
    error = cls(message, replica="r2", txid="r1:0123abcd:42", attempts=3)
    copy = roundtrip(serpent, error)
    assert type(copy) is cls
    assert str(copy) == message
    assert copy.message == message
    assert copy.args == (message,)
    assert (copy.replica, copy.txid, copy.attempts) == ("r2", "r1:0123abcd:42", 3)
    assert copy.exit_code == cls.exit_code
    assert isinstance(copy, errors.RmiKvError)


@pytest.mark.parametrize("cls", errors.ALL_ERRORS, ids=lambda cls: cls.__name__)
def test_error_without_details_roundtrips(serpent, cls):
    copy = roundtrip(serpent, cls())
    assert type(copy) is cls
    assert str(copy) == ""


def test_transaction_aborted_keeps_its_replicas(serpent):
    replicas = {"r2": "voted NO: keys locked by a concurrent transaction", "r3": "did not vote within 2 s"}
    error = errors.TransactionAborted("transaction aborted", replicas=replicas, txid="r1:0123abcd:7", attempts=13)
    copy = roundtrip(serpent, error)
    assert type(copy) is errors.TransactionAborted
    assert copy.replicas == replicas
    assert (copy.txid, copy.attempts) == ("r1:0123abcd:7", 13)
    assert str(copy) == "transaction aborted"


def test_transaction_aborted_replicas_default_to_empty(serpent):
    copy = roundtrip(serpent, errors.TransactionAborted("aborted"))
    assert copy.replicas == {}


def test_key_in_doubt_keeps_replica_and_txid(serpent):
    copy = roundtrip(serpent, errors.KeyInDoubt("held", replica="r4", txid="r1:0123abcd:9"))
    assert type(copy) is errors.KeyInDoubt
    assert (copy.replica, copy.txid) == ("r4", "r1:0123abcd:9")


def test_errors_can_be_raised_and_caught_after_the_trip(serpent):
    copy = roundtrip(serpent, errors.ReplicaUnavailable("r5 is down", replica="r5"))
    with pytest.raises(errors.ReplicaUnavailable, match="r5 is down"):
        raise copy


def test_errors_survive_the_json_form_of_batch_answers():
    refused = errors.TransactionAborted("aborted", replicas={"replica2": "voted NO"}, txid="t", attempts=3)
    text = encode_answers([(True, True), (False, refused), (False, errors.RmiKvError("odd", where=object()))])
    (ok, value), (failed, error), (_, odd) = decode_answers(text, "replica2")
    assert (ok, value, failed) == (True, True, False)
    assert type(error) is errors.TransactionAborted and str(error) == "aborted"
    assert (error.replicas, error.txid, error.attempts) == ({"replica2": "voted NO"}, "t", 3)
    assert type(odd) is errors.RmiKvError and odd.where.startswith("<object")  # not JSON: kept as text
    unknown = decode_answers('[[false, {"class": "NoSuchError", "message": "m"}], [false, 5]]', "p")
    assert [type(error) for _, error in unknown] == [errors.RmiKvError, errors.RmiKvError]
