"""A hostile disk, on real processes: a replica whose files were damaged says so
(log, status), sets them aside, and heals from its peers; anti-entropy repairs
what a disk lost after acknowledging it; ``verify`` finds bytes changed under a
running replica. Every test ends with equal digests computed from the data at
every member and every acknowledged write present at every member."""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from support.checks import settled, wait_until
from support.hostile_disk import scramble_pages
from support.cli import one_json, run_client

KEYS = 100
#: anti-entropy rounds this often in these tests (the default is 5 s)
FAST_ROUNDS = ["--anti-entropy", "0.5"]


def write_keys(cluster, count: int = KEYS) -> dict:
    """``count`` acknowledged writes, spread over the replicas as coordinators."""
    acknowledged = {}
    for index in range(count):
        with cluster.client(f"replica{index % 5 + 1}") as kv:
            kv.put(f"key-{index:03d}", f"value-{index:03d}")
        acknowledged[f"key-{index:03d}"] = f"value-{index:03d}"
    return acknowledged


def database(cluster, name: str) -> Path:
    return cluster.data_dir / name / "rmi_kv.sqlite3"


def replace_bytes(path: Path, old: bytes, new: bytes) -> int:
    """Change every ``old`` in the file to ``new`` (same length) in place; how many."""
    data = bytearray(path.read_bytes())
    count, at = 0, data.find(old)
    while at >= 0:
        data[at:at + len(old)] = new
        count += 1
        at = data.find(old, at + 1)
    with open(path, "r+b") as handle:
        handle.write(data)
    return count


def assert_healed(cluster, acknowledged: dict) -> list[dict]:
    """Equal digests recomputed from the data everywhere, and every acknowledged write at every member."""
    with cluster.client() as kv:
        wait_until(lambda: settled(kv.status(), cluster.names), 30, "the replicas to converge")
        checks = kv.verify()
        statuses = kv.status()
    assert [c["name"] for c in checks] == cluster.names
    assert all(c["ok"] for c in checks), checks
    assert len({c["computed_digest"] for c in checks}) == 1
    assert len({s["digest"] for s in statuses}) == 1
    with cluster.client("replica3") as kv:  # and the cluster takes writes again, through the healed one too
        kv.put("after-healing", "yes")
    for name in cluster.names:
        with cluster.client(name) as kv:
            for key, value in {**acknowledged, "after-healing": "yes"}.items():
                assert kv.get(key) == value, f"{name}: {key}"
    return statuses


def status_of(statuses: list[dict], name: str) -> dict:
    return next(s for s in statuses if s["name"] == name)


@pytest.mark.parametrize("damage", ["value changed in place", "random bytes in every page"])
def test_damaged_files_are_set_aside_and_rebuilt_from_a_member(make_cluster, damage):
    cluster = make_cluster()
    acknowledged = write_keys(cluster)
    assert cluster.stop_replica("replica3") == 0
    path = database(cluster, "replica3")
    if damage == "value changed in place":  # where the value is, in the database or its write-ahead log
        assert sum(replace_bytes(Path(str(path) + suffix), b"value-050", b"value-666")
                   for suffix in ("", "-wal") if Path(str(path) + suffix).exists()) >= 1
    else:
        scramble_pages(path, seed=17, per_page=64)
    cluster.start_replica("replica3")

    log_text = cluster.replicas["replica3"].log_path.read_text()
    damaged = [line for line in log_text.splitlines() if "data damaged:" in line]
    assert len(damaged) == 1 and "found by the start-up check" in damaged[0] and "set aside as" in damaged[0]
    set_aside = sorted(p.name for p in path.parent.iterdir() if ".damaged-" in p.name)
    assert set_aside and not any(name.endswith(("-wal", "-shm")) for name in set_aside[:1])
    statuses = assert_healed(cluster, acknowledged)
    record = status_of(statuses, "replica3")["integrity"]["damage"][0]
    assert record["found_by"] == "start-up check" and record["set_aside"].endswith(set_aside[0])
    assert record["repaired_at"] is not None and record["repaired_from"] in cluster.names
    assert "value-666" not in "".join(str(s) for s in statuses)
    # the damaged file is kept as it was found, for whoever wants to look at it
    kept = path.parent / set_aside[0]
    assert kept.stat().st_size > 0


def test_a_lost_forced_write_is_found_and_repaired_by_anti_entropy(make_cluster):
    """kill -9, then a write-ahead log cut to a third: the disk lost commits it had
    acknowledged as forced. With the strict protocol the replica keeps its data
    (no epoch takes it in afresh), so only a comparison with the others finds it."""
    cluster = make_cluster(replica_args=["--failover", "off", *FAST_ROUNDS])
    acknowledged = write_keys(cluster)
    cluster.kill_replica("replica3")
    wal = Path(str(database(cluster, "replica3")) + "-wal")
    size = wal.stat().st_size
    assert size > 0
    os.truncate(wal, size // 3)
    cluster.start_replica("replica3")
    statuses = assert_healed(cluster, acknowledged)
    integrity = status_of(statuses, "replica3")["integrity"]
    resync = integrity["antientropy"]["last_resync"]
    assert resync["in_step"] and resync["keys_repaired"] > 0
    record = integrity["damage"][0]
    assert record["found_by"] == "anti-entropy round" and record["keys_repaired"] == resync["keys_repaired"]
    log_text = cluster.replicas["replica3"].log_path.read_text()
    assert "differs from the one replica" in log_text and f"re-synced {resync['keys_repaired']} keys" in log_text
    # nobody else changed anything: a minority never repairs a majority
    for name in ("replica1", "replica2", "replica4", "replica5"):
        assert status_of(statuses, name)["integrity"]["antientropy"]["last_resync"] is None


def test_bytes_changed_under_a_running_replica_are_found_by_verify_and_repaired(make_cluster):
    cluster = make_cluster(replica_args=FAST_ROUNDS)
    acknowledged = write_keys(cluster)
    path = database(cluster, "replica3")
    changed = sum(replace_bytes(Path(str(path) + suffix), b"value-050", b"value-666") for suffix in ("", "-wal"))
    assert changed >= 1

    found = run_client(cluster, "--json", "verify")
    assert found.returncode == 6, found.stderr
    checks = {check["name"]: check for check in one_json(found.stdout)["replicas"]}
    assert checks["replica3"]["ok"] is False and "differs from the stored one" in checks["replica3"]["damage"]["what"]
    assert all(checks[name]["ok"] for name in ("replica1", "replica2", "replica4", "replica5"))
    log_text = cluster.replicas["replica3"].log_path.read_text()
    assert "found by the verify command" in log_text

    statuses = assert_healed(cluster, acknowledged)
    record = status_of(statuses, "replica3")["integrity"]["damage"][0]
    assert record["found_by"] == "verify command" and record["keys_repaired"] == 1
    again = run_client(cluster, "verify")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "every member's data matches its digest" in again.stdout
    assert "replica3: ok: 101 keys" in again.stdout  # the 100 and the write after healing


def test_a_file_damaged_under_a_running_replica_makes_it_restart_and_rebuild(make_cluster):
    """Random bytes in the pages of a running replica's database: verify finds that
    SQLite's own check fails, and the replica starts again, sets the file aside and copies."""
    cluster = make_cluster(replica_args=FAST_ROUNDS)
    acknowledged = write_keys(cluster)
    path = database(cluster, "replica3")
    with sqlite3.connect(path) as connection:  # fold the write-ahead log in, so the pages are in the file
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pid = cluster.replicas["replica3"].pid
    scramble_pages(path, seed=23, per_page=64, keep_header=True)  # the file still opens as a database

    found = run_client(cluster, "--json", "verify")
    assert found.returncode == 6, found.stdout + found.stderr
    log_path = cluster.replicas["replica3"].log_path
    wait_until(lambda: "set aside as" in log_path.read_text(), 30, "replica3 to restart and set its file aside")
    log_text = log_path.read_text()
    assert "SQLite's integrity check failed" in log_text and "the replica restarts" in log_text
    assert cluster.replicas["replica3"].pid == pid  # the same process, started again in place
    statuses = assert_healed(cluster, acknowledged)
    history = status_of(statuses, "replica3")["integrity"]["damage"]
    assert history[0]["found_by"] == "start-up check" and history[0]["repaired_at"] is not None
    assert any(".damaged-" in p.name for p in path.parent.iterdir())
