"""Backup and restore on real processes: a snapshot saved while writes go on is a
consistent copy of committed data, and a new cluster started from it (every
replica restored, or one and the others catching up) holds exactly it."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rmi_kv.server.cluster import LocalCluster
from rmi_kv.storage import snapshot_file
from support.checks import settled, wait_until
from support.cli import ROOT, one_json, run_client

PRELOADED = {f"base:{index:04d}": f"value {index}" for index in range(300)}


def load(cluster: LocalCluster, writes: dict) -> None:
    with cluster.client() as kv:
        items = list(writes.items())
        for start in range(0, len(items), 100):
            kv.transaction(dict(items[start:start + 100]))


def file_entries(path: Path) -> dict:
    return {key: (value, version) for key, value, version in snapshot_file.entries(path)}


def converged_digests(cluster: LocalCluster, names) -> set:
    with cluster.client() as kv:
        statuses = wait_until(lambda: (lambda found: settled(found, names) and found)(kv.status()), 30,
                              "the replicas converge")
    return {status["digest"] for status in statuses}


def every_value(cluster: LocalCluster, replica: str) -> dict:
    """Every live key and its value, as ``replica`` serves them."""
    found, after = {}, None
    with cluster.client(replica) as kv:
        while True:
            keys = kv.keys("", 1000, after=after)
            for key in keys:
                found[key] = kv.get(key)
            if len(keys) < 1000:
                return found
            after = keys[-1]


class PairWriter(threading.Thread):
    """Writes pairs of keys in one transaction each, one after another, until stopped."""

    def __init__(self, cluster: LocalCluster) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.done = 0
        self.stop = threading.Event()
        self.error = None

    def run(self) -> None:
        try:
            with self.cluster.client("replica3") as kv:
                while not self.stop.is_set():
                    index = self.done
                    kv.transaction({f"load:{index:05d}:a": str(index), f"load:{index:05d}:b": str(index),
                                    f"base:{index % 300:04d}": f"rewritten {index}"})
                    self.done += 1
        except Exception as error:  # reported by the test
            self.error = error


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A snapshot saved from a five-replica cluster while a writer keeps committing (the cluster is
    stopped afterwards): the file, the save's JSON document, the writer."""
    base = tmp_path_factory.mktemp("saved")
    cluster = LocalCluster(5, data_dir=base / "source")
    path = base / "backup.snap"
    try:
        cluster.start()
        load(cluster, PRELOADED)
        writer = PairWriter(cluster)
        writer.start()
        try:
            wait_until(lambda: writer.done >= 20, 30, "writes under way")
            before = writer.done
            result = run_client(cluster, "--replica", "replica2", "--json", "snapshot", "save", str(path))
            wait_until(lambda: writer.done >= before + 20, 30, "writes go on after the save")
        finally:
            writer.stop.set()
            writer.join(30)
    finally:
        cluster.stop()
    assert writer.error is None, writer.error
    assert result.returncode == 0, result.stderr
    document = one_json(result.stdout)
    assert (document["ok"], document["command"], document["action"], document["replica"]) == \
        (True, "snapshot", "save", "replica2")
    assert document["digest_ok"] and document["file"] == str(path) and document["size"] == path.stat().st_size
    assert not snapshot_file.temporary_path(path).exists()
    return path, document, writer


def test_a_snapshot_saved_under_load_is_a_consistent_copy(saved):
    path, document, writer = saved
    info = snapshot_file.check(path)  # the digest recomputed from the entries is the replica's
    assert (info.digest, info.keys) == (document["digest"], document["keys"])
    entries = file_entries(path)
    # the state after some committed transaction: a prefix of the writer's transactions, each one whole
    pairs = sorted({key.rsplit(":", 1)[0] for key in entries if key.startswith("load:")})
    taken = len(pairs)
    assert 20 <= taken < writer.done, "the snapshot was taken while the writes went on"
    assert pairs == [f"load:{index:05d}" for index in range(taken)]
    for index in range(taken):
        assert entries[f"load:{index:05d}:a"][0] == entries[f"load:{index:05d}:b"][0] == str(index)
    for index in range(300):
        last = max((i for i in range(taken) if i % 300 == index), default=None)
        assert entries[f"base:{index:04d}"][0] == (PRELOADED[f"base:{index:04d}"] if last is None
                                                   else f"rewritten {last}")
    assert len(entries) == 300 + 2 * taken == document["keys"]


def test_every_replica_restored_from_the_file(saved, make_cluster):
    path, document, _ = saved
    expected = {key: value for key, (value, _) in file_entries(path).items()}
    cluster = make_cluster(5, replica_args=["--restore", str(path)])
    assert converged_digests(cluster, cluster.names) == {document["digest"]}
    assert every_value(cluster, "replica4") == expected
    with cluster.client() as kv:
        statuses = kv.status()
        assert {s["failover"]["epoch"]["number"] for s in statuses} == {0}
        assert all(s["keys"] == document["keys"] and not s["catching_up"] for s in statuses)
        kv.put("after:restore", "written")  # the new cluster takes writes
    assert len(converged_digests(cluster, cluster.names)) == 1
    assert "restored" in (cluster.data_dir / "replica1.log").read_text()
    # a replica started again with --restore on data it holds already refuses, and says why
    cluster.stop_replica("replica1")
    with pytest.raises(RuntimeError, match="already holds data"):
        cluster.spawn_replica("replica1").wait_ready()


def test_one_replica_restored_and_the_others_catch_up(saved, tmp_path):
    path, document, _ = saved
    expected = {key: value for key, (value, _) in file_entries(path).items()}
    cluster = LocalCluster(5, data_dir=tmp_path / "one-restored")
    try:
        cluster.start_ns()
        restored = cluster.spawn_replica("replica1", extra_args=["--restore", str(path)])
        with cluster.client() as kv:  # it registers once its data is in place
            wait_until(lambda: "replica1" in kv.replicas(refresh=True), 30, "replica1 registers")
        others = [cluster.spawn_replica(name) for name in cluster.names[1:]]
        for child in [restored, *others]:
            child.wait_ready()
        assert converged_digests(cluster, cluster.names) == {document["digest"]}
        assert every_value(cluster, "replica5") == expected
        for name in cluster.names[1:]:
            assert "caught up from replica" in (cluster.data_dir / f"{name}.log").read_text()
    finally:
        cluster.stop()


def test_a_restore_refuses_a_damaged_file(saved, tmp_path):
    path, _, _ = saved
    lines = path.read_text("utf-8").splitlines()
    damaged = tmp_path / "damaged.snap"
    damaged.write_text("\n".join(lines[:-1]) + "\n", "utf-8")  # an entry lost
    status = run_client(1, "snapshot", "status", str(damaged))  # no cluster needed (nor reachable at port 1)
    assert status.returncode == 2 and "is not a usable rmi_kv snapshot" in status.stderr
    nameserver_only = LocalCluster(1, data_dir=tmp_path / "fresh")
    try:
        nameserver_only.start_ns()
        child = nameserver_only.spawn_replica("replica1", extra_args=["--restore", str(damaged)])
        with pytest.raises(RuntimeError, match="is not a usable rmi_kv snapshot"):
            child.wait_ready()
        assert child.process.returncode == 2
    finally:
        nameserver_only.stop()


def test_status_and_save_in_script_and_console_mode(saved, tmp_path):
    path, document, _ = saved
    script = run_client(1, "--json", input=f"snapshot status {path}\n")
    status = one_json(script.stdout)
    assert script.returncode == 0, script.stderr
    assert (status["action"], status["keys"], status["digest"], status["size"], status["digest_ok"]) == \
        ("status", document["keys"], document["digest"], path.stat().st_size, True)
    plain = run_client(1, "snapshot", "status", str(path))
    assert plain.returncode == 0
    assert re.fullmatch(rf"{re.escape(str(path))}: {document['keys']} keys, {path.stat().st_size} bytes, digest "
                        rf"{document['digest']}, taken from replica2 at [-0-9: ]+; the digest checks out\n",
                        plain.stdout)
    console = run_client(1, "-i", input=f"snapshot status {path}\nhelp snapshot\n")
    assert f"{document['keys']} keys" in console.stdout and "snapshot save|status FILE" in console.stdout


def test_save_in_script_and_console_mode(cluster, tmp_path):
    load(cluster, {"s:1": "one", "s:2": "two"})
    first, second = tmp_path / "first.snap", tmp_path / "second.snap"
    script = run_client(cluster, "--json", input=f"snapshot save {first}\nsnapshot status {first}\n")
    assert script.returncode == 0, script.stderr
    saved, status = [json.loads(line) for line in script.stdout.splitlines()]
    assert saved["keys"] == status["keys"] == 2 and saved["digest"] == status["digest"]
    console = run_client(cluster, "-i", "--replica", "replica5", input=f"snapshot save {second}\n")
    assert console.returncode == 0, console.stderr
    assert re.search(rf"saved {re.escape(str(second))}: 2 keys, \d+ bytes, digest {saved['digest']}, taken from "
                     rf"replica5", console.stdout)
    refused = run_client(cluster, "snapshot", "save", str(tmp_path / "no" / "such" / "dir.snap"))
    assert refused.returncode == 2 and "cannot write" in refused.stderr  # a path the user gave: a usage error
    with cluster.client() as kv:  # the refused save closed its snapshot on the replica
        assert kv.get("s:1") == "one"


def test_backup_and_restore_with_tls(tmp_path):
    certificates = tmp_path / "certs"
    made = subprocess.run([sys.executable, str(ROOT / "run_nameserver.py"), "--make-certs", str(certificates)],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    path = tmp_path / "tls.snap"
    tls = ["--tls-dir", str(certificates)]
    source = LocalCluster(3, data_dir=tmp_path / "source", tls_dir=certificates)
    try:
        source.start()
        assert run_client(source, *tls, "txn", "put", "t:1", "one,", "put", "t:2", "two").returncode == 0
        saved = run_client(source, *tls, "--json", "snapshot", "save", str(path))  # a client certificate is enough
        assert saved.returncode == 0, saved.stderr
        assert one_json(saved.stdout)["keys"] == 2
    finally:
        source.stop()
    target = LocalCluster(3, data_dir=tmp_path / "target", tls_dir=certificates,
                          replica_args=["--restore", str(path)])
    try:
        target.start()
        got = run_client(target, *tls, "--replica", "replica3", "get", "t:2")
        assert (got.returncode, got.stdout) == (0, "two\n")
        status = run_client(target, *tls, "--json", "status")
        assert {r["digest"] for r in one_json(status.stdout)["replicas"]} == {one_json(saved.stdout)["digest"]}
    finally:
        target.stop()


def test_a_restore_refuses_to_join_members_that_serve_other_data(saved, tmp_path):
    path, _, _ = saved
    cluster = LocalCluster(2, data_dir=tmp_path / "late", replica_args=["--failover", "off"])
    try:
        cluster.start_ns()
        cluster.start_replica("replica2")  # alone with an empty directory: it serves empty data
        late = cluster.spawn_replica("replica1", extra_args=["--restore", str(path)])
        with pytest.raises(RuntimeError, match="replica2 already serves other data"):
            late.wait_ready()
        with cluster.client("replica2") as kv:
            assert kv.keys() == []
    finally:
        cluster.stop()
