"""The benchmark's tables, from figures made up here (nothing is measured): units, words, captions."""
from __future__ import annotations

from rich.console import Console

from rmi_kv.bench.baselines import FLOOR_EXPLANATION, Baselines
from rmi_kv.bench.report import baselines_table, clients_word, results_table


def rendered(renderable, width: int = 120) -> str:
    console = Console(width=width, record=True, color_system=None, file=open("/dev/null", "w"))
    console.print(renderable)
    return console.export_text()


def baselines() -> Baselines:
    return Baselines("replica1", 0.25, 0.4, 100, 0.3, 0.6, 4, 2.0, 3.0, 50, 4.0, 5, 1.5, 50, "/tmp", "ext4")


def figures(count: int, ops_per_s: float = 1000.0) -> dict:
    return {"count": count, "ops_per_s": ops_per_s, "p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 3.0,
            "p50_over_floor": 1.5, "p99_over_floor": 4.0}


def run(clients: int, puts: int, gets: int) -> dict:
    return {"clients": clients, "put": figures(puts), "get": figures(gets), "noop": figures(100, 2000.0),
            "get_vs_noop": 0.5, "reference": None}


def test_the_baselines_table_says_its_unit():
    found = baselines()
    text = rendered(baselines_table(found, found.floors()))
    assert [line.split() for line in text.splitlines() if "baseline" in line] == [["baseline", "p50", "note"]]
    for row in ("RT: no-op ping()", "W: one forced write", "floor GET = 1 RT"):
        [line] = [line for line in text.splitlines() if row in line]
        assert " ms" in line, line
    assert "0.25 ms" in text and "p95 0.40 ms" in text


def test_one_client_is_one_client_and_a_mixed_run_has_no_get_over_noop_ratio():
    assert (clients_word(1), clients_word(2)) == ("client", "clients")
    read_only = rendered(results_table([run(1, 0, 90), run(3, 0, 90)]))
    assert "GET ÷ no-op throughput: 1 client 0.50×, 3 clients 0.50×" in read_only
    mixed = rendered(results_table([run(2, 50, 50)]))
    assert "GET ÷ no-op" not in mixed and "no-op" in mixed, "the no-op row stays, the ratio goes"


def test_the_help_speaks_of_the_store_not_of_an_issue():
    assert "issue" not in FLOOR_EXPLANATION and "put_planned_formula_ms" in FLOOR_EXPLANATION
