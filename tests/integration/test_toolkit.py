"""What redis-cli and etcdctl users reach for, on real processes: prefix reads,
prefix deletes and counts, compare-and-set and guarded transactions (checked
for linearizability under concurrent clients), through run_client.py too."""
from __future__ import annotations

import json
import threading

import pytest

from rmi_kv.errors import CompareFailed, InvalidRequest, OutcomeUnknown, RmiKvError
from support import launchers
from support.cli import one_json, run_client
from support.linearizability import CAS, GET, History, check_history


@pytest.fixture(scope="module")
def toolkit_cluster(shared_cluster):
    with shared_cluster.client("replica1") as kv:
        kv.transaction({f"user:{index:03d}": f"name-{index}" for index in range(250)})
        kv.transaction({"userx": "not under user:", "zeta": "z"})
    return shared_cluster


def test_get_prefix_pages_through_every_key_with_its_value(toolkit_cluster):
    seen, after = [], None
    with toolkit_cluster.client("replica4") as kv:
        while True:
            page = kv.scan("user:", 100, after=after)
            seen += page
            if len(page) < 100:
                break
            after = page[-1][0]
    assert seen == [(f"user:{index:03d}", f"name-{index}") for index in range(250)]
    first = run_client(toolkit_cluster, "--json", "get", "--prefix", "user:", "--limit", "2")
    document = one_json(first.stdout)
    assert first.returncode == 0 and document["items"] == [{"key": "user:000", "value": "name-0"},
                                                           {"key": "user:001", "value": "name-1"}]
    assert document["more"] is True and document["next_after"] == "user:001"
    plain = run_client(toolkit_cluster, "get", "--prefix", "user:", "--after", "user:247")
    assert plain.stdout.splitlines() == ["user:248", "name-248", "user:249", "name-249"]


def test_count(toolkit_cluster):
    assert run_client(toolkit_cluster, "count", "user:").stdout.strip() == "250"
    with toolkit_cluster.client("replica2") as kv:
        assert kv.count("user") == 251 and kv.count("nothing-here") == 0


def test_delete_prefix_is_one_transaction_that_says_how_many(toolkit_cluster):
    with toolkit_cluster.client("replica3") as kv:
        kv.transaction({f"tmp:{index}": "x" for index in range(20)})
        assert kv.delete_prefix("tmp:") == 20
        assert kv.delete_prefix("tmp:") == 0
        for name in toolkit_cluster.names:
            with toolkit_cluster.client(name) as each:
                assert each.count("tmp:") == 0
    result = run_client(toolkit_cluster, "--json", "delete", "--prefix", "nothing:")
    assert one_json(result.stdout)["deleted"] == 0


def test_delete_prefix_above_the_transaction_limit_is_refused_and_deletes_nothing(toolkit_cluster):
    with toolkit_cluster.client("replica1") as kv:
        for start in range(0, 1001, 500):
            kv.transaction({f"big:{index:04d}": "x" for index in range(start, min(1001, start + 500))})
        with pytest.raises(InvalidRequest) as raised:
            kv.delete_prefix("big:")
        assert "1001 keys start with 'big:'" in str(raised.value) and "1000" in str(raised.value)
        assert kv.count("big:") == 1001
        result = run_client(toolkit_cluster, "delete", "--prefix", "big:")
        assert result.returncode == 2 and "more than the 1000" in result.stderr
        assert kv.delete_prefix("big:0") == 1000 and kv.delete_prefix("big:") == 1


def test_cas_sets_only_what_holds_the_expected_value_and_a_failed_compare_is_its_own_answer(toolkit_cluster):
    with toolkit_cluster.client("replica2") as kv:
        kv.cas("counter", None, "1")
        kv.cas("counter", "1", "2")
        with pytest.raises(CompareFailed) as raised:
            kv.cas("counter", "1", "3")
        assert (raised.value.expected, raised.value.actual) == ("1", "2")
    for name in toolkit_cluster.names:
        with toolkit_cluster.client(name) as kv:
            assert kv.get("counter") == "2"
    failed = run_client(toolkit_cluster, "--json", "cas", "counter", "absent", "9")
    assert failed.returncode == 8
    document = json.loads(failed.stderr)
    assert document["error"] == "CompareFailed" and document["compared"] is False and document["actual"] == "2"
    assert run_client(toolkit_cluster, "cas", "counter", "2", "3").stdout.strip() == "OK"


def test_txn_guards_on_keys_it_writes_and_keys_it_only_reads(toolkit_cluster):
    with toolkit_cluster.client("replica5") as kv:
        kv.transaction({"g:a": "1", "g:flag": "on"})
    result = run_client(toolkit_cluster, "txn", "if", "g:a", "==", "1,", "if", "g:flag", "!=", "off,",
                        "put", "g:a", "2,", "delete", "g:b")
    assert (result.returncode, result.stdout.strip()) == (0, "OK"), result.stderr
    refused = run_client(toolkit_cluster, "txn", "if", "g:flag", "==", "off,", "put", "g:a", "3")
    assert refused.returncode == 8 and "'g:flag' holds 'on'" in refused.stderr
    with toolkit_cluster.client("replica1") as kv:
        assert kv.get("g:a") == "2"


def test_concurrent_cas_increments_are_linearizable_and_none_is_lost(toolkit_cluster):
    """Six clients increment one counter with cas, each through its own replica: every
    increment that was answered OK is in the final value, and the history is linearizable."""
    history, won, errors = History(), [], []
    with toolkit_cluster.client("replica1") as kv:
        kv.put("race", "0")

    def client(number: int) -> None:
        with toolkit_cluster.client(f"replica{number % 5 + 1}") as kv:
            for _ in range(8):
                token = history.invoke("race", GET, client=f"c{number}")
                try:
                    current = kv.get("race")
                except RmiKvError as error:
                    history.unknown(token)
                    errors.append(error)
                    continue
                history.complete(token, current)
                new = str(int(current) + 1)
                token = history.invoke("race", CAS, new, client=f"c{number}", expected=current)
                try:
                    kv.cas("race", current, new)
                except CompareFailed as error:
                    history.compare_failed(token, error.actual)
                    continue
                except OutcomeUnknown:
                    history.unknown(token)
                    continue
                except RmiKvError as error:  # aborted on a lock conflict after its retries: nothing written
                    history.fail(token)
                    errors.append(error)
                    continue
                history.complete(token)
                won.append(new)

    threads = [threading.Thread(target=client, args=(number,)) for number in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with toolkit_cluster.client("replica3") as kv:
        final = kv.get("race")
    assert int(final) == len(won) and len(set(won)) == len(won)  # no increment lost, none twice
    assert len(won) >= 8, (won, errors)
    result = check_history(history.operations(), initial={"race": "0"})
    assert result.ok, result.explanation


def test_prefixes_counts_and_cas_under_tls(tmp_path):
    """With a client certificate: the client-level calls pass, and the guards reach every
    participant through the member-only canCommit."""
    with launchers.tls_cluster(tmp_path) as cluster:
        tls = ["--tls-dir", cluster.tls_dir]
        assert run_client(cluster, *tls, "txn", "put", "t:a", "1,", "put", "t:b", "2").returncode == 0
        assert run_client(cluster, *tls, "get", "--prefix", "t:").stdout.splitlines() == ["t:a", "1", "t:b", "2"]
        assert run_client(cluster, *tls, "count", "t:").stdout.strip() == "2"
        assert run_client(cluster, *tls, "cas", "t:a", "1", "9").returncode == 0
        assert run_client(cluster, *tls, "cas", "t:a", "1", "9").returncode == 8
        assert run_client(cluster, *tls, "delete", "--prefix", "t:").stdout.strip() == "2"
