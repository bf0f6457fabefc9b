"""-w, --raw and the redis names through real processes (``run_client.py`` one-shot and script mode)."""
from __future__ import annotations

import json

from support.cli import one_json, run_client


def test_write_out_table_json_and_the_redis_names(shared_cluster):
    put = run_client(shared_cluster, "set", "fruit", "ripe pear")
    assert (put.returncode, put.stdout) == (0, "OK\n"), put.stderr
    table = run_client(shared_cluster, "-w", "table", "get", "fruit")
    assert table.returncode == 0 and '"fruit"' in table.stdout and '"ripe pear"' in table.stdout
    raw = run_client(shared_cluster, "get", "fruit", "-w", "table", "--raw")
    assert raw.stdout.splitlines()[-1].split() == ["fruit", "ripe", "pear"]
    document = one_json(run_client(shared_cluster, "-w", "json", "get", "fruit").stdout)
    assert (document["command"], document["value"]) == ("get", "ripe pear")
    assert (run_client(shared_cluster, "exists", "fruit").returncode,
            run_client(shared_cluster, "exists", "fruit").stdout) == (0, "1\n")
    gone = run_client(shared_cluster, "del", "fruit")
    assert (gone.returncode, gone.stdout) == (0, "deleted\n")
    missing = run_client(shared_cluster, "exists", "fruit")
    assert (missing.returncode, missing.stdout, missing.stderr) == (1, "0\n", "")
    ping = run_client(shared_cluster, "--replica", "replica4", "ping")
    assert ping.returncode == 0 and ping.stdout.startswith("PONG from replica4 (") and " ms)" in ping.stdout


def test_an_unknown_command_gets_a_did_you_mean(shared_cluster):
    typo = run_client(shared_cluster, "gett", "a")
    assert typo.returncode == 2
    assert "error: unknown command 'gett'" in typo.stderr
    assert "hint: did you mean 'get'? 'run_client.py --help' lists the commands" in typo.stderr
    as_json = run_client(shared_cluster, "-w", "json", "sett", "a", "1")
    assert as_json.returncode == 2 and json.loads(as_json.stderr)["hint"].startswith("did you mean 'set'?")


def test_a_script_switches_to_tables_midway(shared_cluster):
    script = "put city Rome\nget city\noutput table\nget city\nraw on\nget city\n"
    result = run_client(shared_cluster, "--file", "-", input=script)
    assert result.returncode == 0, result.stderr
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    assert lines[:2] == ["OK", "Rome"]
    assert '"city"  "Rome"' in lines and "city  Rome" in lines
