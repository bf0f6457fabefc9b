"""What the benchmark shows and writes: rich tables, a terminal bar chart,
an SVG line chart of throughput against clients, and the JSON record."""
from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import Optional

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from .baselines import Baselines
from .runner import RunSummary
from .stats import LatencyHistogram


# --------------------------------------------------------------------- figures
def _ratio(value: Optional[float], floor: Optional[float]) -> Optional[float]:
    return round(value / floor, 2) if value is not None and floor else None


def kind_json(summary: RunSummary, histogram: LatencyHistogram, floor_ms: Optional[float]) -> dict:
    """Throughput and latency of one kind of operation, with ratios to its floor."""
    figures = histogram.summary_ms()
    figures["ops_per_s"] = round(summary.ops_per_s(histogram), 1)
    for name in ("p50", "p95", "p99"):
        figures[f"{name}_over_floor"] = _ratio(figures[f"{name}_ms"], floor_ms)
    return figures


def run_json(summary: RunSummary, floors: dict, cores: int, put_floor_ms: Optional[float] = None) -> dict:
    """Every figure of one run; PUT latencies are read against ``put_floor_ms``
    (default: the floor of the protocol that waits for phase 2)."""
    machine_s = (summary.window_s or summary.elapsed_s) * cores
    cluster_total = sum(summary.cluster_cpu_s.values())
    operations = _operations(summary)
    return {
        "clients": summary.clients,
        "mode": summary.mode,
        "elapsed_s": round(summary.elapsed_s, 4),
        "ops": operations,
        "ops_per_s": round(summary.ops_per_s(summary.put) + summary.ops_per_s(summary.get), 1),
        "put": kind_json(summary, summary.put, floors.get("put_ms") if put_floor_ms is None else put_floor_ms),
        "get": kind_json(summary, summary.get, floors.get("get_ms")),
        **noop_json(summary, floors),
        **reference_json(summary, floors, put_floor_ms),
        "aborts": summary.aborts,
        "outcome_unknown": summary.outcome_unknown,
        "errors": dict(summary.errors),
        "retries": summary.retries,
        "retries_seen_in_aborts": summary.abort_attempts,
        "retries_note": _retries_note(summary),
        "forced_commits_per_put": _forced_per_put(summary),
        "replica_counters_delta": summary.counters_delta,
        "replicas_used": summary.replicas_used,
        "cpu": {
            "cores": cores,
            "client_s": round(summary.client_cpu_s, 3),
            "client_share_of_machine": _ratio(summary.client_cpu_s, machine_s),
            "cluster_s": summary.cluster_cpu_s,
            "cluster_share_of_machine": _ratio(cluster_total, machine_s) if summary.cluster_cpu_s else None,
            "benchmark_main_process_s": round(summary.main_cpu_s, 3),
            "machine_busy_s": None if summary.machine_cpu_s is None else round(summary.machine_cpu_s, 3),
            "others_share_of_machine": (None if summary.others_cpu_s is None
                                        else _ratio(summary.others_cpu_s, machine_s)),
            "client_ms_per_op": _per_op_ms(summary.client_cpu_s, operations),
            "cluster_ms_per_op": _per_op_ms(cluster_total, operations) if summary.cluster_cpu_s else None,
        },
        "failures": summary.failures,
        **(summary.digests.as_dict() if summary.digests else {"digests_equal": None}),
    }


def noop_json(summary: RunSummary, floors: dict) -> dict:
    """The no-op run's throughput and p50, GET ops/s over it, and the no-op run's own
    figures (latencies also over floor(GET)); all None for a run without reads."""
    noop = summary.noop
    p50_s, ratio = summary.noop_p50_s, summary.get_vs_noop
    details = None
    if noop is not None:
        details = {**kind_json(noop, noop.ping, floors.get("get_ms")), "elapsed_s": round(noop.elapsed_s, 4),
                   "errors": dict(noop.errors), "failures": noop.failures,
                   "replicas_used": noop.replicas_used}
    return {
        "noop_ops_per_s": None if summary.noop_ops_per_s is None else round(summary.noop_ops_per_s, 1),
        "noop_p50_ms": None if p50_s is None else round(p50_s * 1000.0, 4),
        "get_vs_noop": None if ratio is None else round(ratio, 3),
        "noop": details,
    }


def reference_json(summary: RunSummary, floors: dict, put_floor_ms: Optional[float] = None) -> dict:
    """The same run on the reference two-phase commit (--reference), and rmi_kv's ops/s
    over its ops/s per kind; all None without one."""
    reference = summary.reference
    details = None
    if reference is not None:
        cluster_s = sum(reference.cluster_cpu_s.values())
        details = {"put": kind_json(reference, reference.put, floors.get("put_ms") if put_floor_ms is None
                                    else put_floor_ms),
                   "get": kind_json(reference, reference.get, floors.get("get_ms")),
                   "elapsed_s": round(reference.elapsed_s, 4), "errors": dict(reference.errors),
                   "failures": reference.failures, "replicas_used": reference.replicas_used,
                   "cluster_cpu_s": reference.cluster_cpu_s,
                   "cluster_ms_per_op": _per_op_ms(cluster_s, _operations(reference)) if cluster_s else None,
                   **(reference.digests.as_dict() if reference.digests else {"digests_equal": None})}
    ratios = {kind: summary.vs_reference(kind) for kind in ("put", "get")}
    return {"reference": details,
            **{f"{kind}_vs_reference": None if ratio is None else round(ratio, 3) for kind, ratio in ratios.items()}}


def _operations(summary: RunSummary) -> int:
    return summary.put.count + summary.get.count


def _retries_note(summary: RunSummary) -> str:
    if "coordinated_retries" in summary.counters_delta:
        return "conflict retries inside the coordinators, as the replicas count them (coordinated_retries)"
    return ("conflict retries run inside the coordinators; 'retries' = the sum over replicas of the "
            "coordinated_aborted delta (every aborted attempt) minus the aborts the clients saw; exact while "
            "the benchmark is the cluster's only client")


def _forced_per_put(summary: RunSummary) -> Optional[float]:
    """SQLite commits (fsyncs) over all replicas per committed PUT, when the replicas count them."""
    commits = summary.counters_delta.get("forced_commits")
    return round(commits / summary.put.count, 2) if commits is not None and summary.put.count else None


def _per_op_ms(cpu_s: float, operations: int) -> Optional[float]:
    return round(cpu_s * 1000.0 / operations, 3) if operations else None


# ------------------------------------------------------------------ rich views
def _ms(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}"


def _ms_unit(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def clients_word(count: int) -> str:
    """'client' or 'clients', for ``count`` of them."""
    return "client" if count == 1 else "clients"


def _times(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}×"


def baselines_table(baselines: Baselines, floors: dict) -> Table:
    """The floors, measured before the runs."""
    table = Table(title="Baselines (this machine, this cluster)", title_justify="left", box=box.SIMPLE)
    table.add_column("baseline", no_wrap=True)
    table.add_column("p50", justify="right", no_wrap=True)
    table.add_column("note", style="dim", header_style="dim")
    width = baselines.parallel_forced_write_width
    rows = [
        ("RT: no-op ping()", baselines.round_trip_p50_ms,
         f"reused direct proxy to {baselines.replica}; p95 {_ms_unit(baselines.round_trip_p95_ms)}"),
        ("ping() via KeyValueClient", baselines.client_ping_p50_ms, "RT plus the client library's own cost"),
        (f"ping() fan-out to {baselines.fanout_width}", baselines.fanout_p50_ms, "in parallel: the shape of a 2PC phase"),
        ("W: one forced write", baselines.forced_write_p50_ms,
         f"SQLite commit, WAL, FULL; p95 {_ms_unit(baselines.forced_write_p95_ms)}; {baselines.filesystem}"),
        (f"{width} forced writes at once", baselines.parallel_forced_write_p50_ms, "one per replica, on this disk"),
        ("append + os.fsync", baselines.fsync_p50_ms, ""),
        ("floor PUT = 3 RT + 3 W", floors["put_ms"],
         f"early reply (2 RT + 2 W): {_ms_unit(floors['put_early_reply_ms'])}"),
        ("floor PUT, shared disk", floors["put_shared_disk_ms"], f"3 RT + 2 x ({width} writes at once) + W"),
        ("floor GET = 1 RT", floors["get_ms"], ""),
    ]
    for label, value, note in rows:
        table.add_row(label, _ms_unit(value), note)
    return table


def results_table(runs: list[dict]) -> Table:
    """Throughput and latency per run and kind, latencies also as multiples of their floor;
    for runs with reads also their no-op run, and GET ops/s over its calls/s below."""
    captions = [line for line in (_get_vs_noop_line(runs), _vs_reference_line(runs)) if line is not None]
    table = Table(title="Throughput and latency", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  caption=Text("").join(captions) if captions else None, caption_justify="left",
                  caption_style="none")
    for name in ("clients", "op", "ops/s", "p50 ms", "p95 ms", "p99 ms", "p50/floor", "p99/floor"):
        table.add_column(name, justify="left" if name == "op" else "right")
    for run in runs:
        reference = run.get("reference") or {}
        rows = ([(kind.upper(), run[kind]) for kind in ("put", "get")] + [("no-op", run.get("noop"))]
                + [(f"bare {kind.upper()}", reference.get(kind)) for kind in ("put", "get")])
        for label, figures in rows:
            if not figures or not figures["count"]:
                continue
            table.add_row(str(run["clients"]), label, Text(f"{figures['ops_per_s']:,.0f}", style="bold"),
                          _ms(figures["p50_ms"]), _ms(figures["p95_ms"]), _ms(figures["p99_ms"]),
                          Text(_times(figures["p50_over_floor"]), style="cyan"), _times(figures["p99_over_floor"]),
                          style=None if label in ("PUT", "GET") else "dim")
    return table


def _get_vs_noop_line(runs: list[dict]) -> Optional[Text]:
    """'GET ÷ no-op throughput: 1 client 0.62×, 16 clients 0.71×' for the read-only runs with a no-op run
    (GET ops/s over the calls/s of the no-op run with the same clients)."""
    with_noop = [run for run in runs if run.get("noop") and not run["put"]["count"]]
    if not with_noop:  # in a mixed run the clients' time goes to PUTs too: the ratio would mean nothing
        return None
    line = Text("GET ÷ no-op throughput: ")
    for position, run in enumerate(with_noop):
        ratio = run["get_vs_noop"]
        line.append(", " if position else "")
        line.append(f"{run['clients']} {clients_word(run['clients'])} ")
        line.append("-" if ratio is None else f"{ratio:.2f}×", style="bold")
    return line + "\n"  # a blank line before the next table


def _vs_reference_line(runs: list[dict]) -> Optional[Text]:
    """'rmi_kv ÷ bare 2PC throughput: PUT 1 client 0.62×, ...' for the runs with --reference."""
    parts = [(kind, run) for kind in ("put", "get") for run in runs
             if run.get("reference") and run[kind]["count"]]
    if not parts:
        return None
    line = Text("rmi_kv ÷ bare 2PC throughput (bare: the same clients on --reference nodes): ")
    for position, (kind, run) in enumerate(parts):
        ratio = run[f"{kind}_vs_reference"]
        line.append(", " if position else "")
        line.append(f"{kind.upper()} {run['clients']} client" + ("" if run["clients"] == 1 else "s") + " ")
        line.append("-" if ratio is None else f"{ratio:.2f}×", style="bold")
    return line + "\n"


def health_table(runs: list[dict]) -> Table:
    """Aborts, retries, unknown outcomes, other errors and the digest check per run."""
    table = Table(title="Health", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("clients", "aborts", "retries", "unknown outcome", "other errors", "replica digests"):
        table.add_column(name, justify="right")
    for run in runs:
        equal = run.get("digests_equal")
        digest_cell = Text("equal", style="green") if equal else Text("DIFFER", style="bold red")
        if not equal and run.get("unreachable"):
            digest_cell = Text(f"unreachable: {', '.join(run['unreachable'])}", style="bold red")
        table.add_row(str(run["clients"]), str(run["aborts"]), "-" if run["retries"] is None else str(run["retries"]),
                      str(run["outcome_unknown"]), str(sum(run["errors"].values())), digest_cell)
    return table


def cpu_table(runs: list[dict]) -> Table:
    """Where the CPU went: shares of all the machine's cores, and CPU per operation."""
    table = Table(title="Where the CPU went (share of all cores; CPU ms per operation)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    with_reference = any(run.get("reference") for run in runs)
    for name in ("clients", "clients' CPU", "cluster CPU", "others' CPU", "cluster ms/op", "client ms/op") + (
            ("bare 2PC cluster ms/op",) if with_reference else ()):
        table.add_column(name, justify="right")
    for run in runs:
        cpu = run["cpu"]
        reference = [_ms((run.get("reference") or {}).get("cluster_ms_per_op"))] if with_reference else []
        table.add_row(str(run["clients"]), *(_percent(cpu[f"{who}_share_of_machine"])
                                              for who in ("client", "cluster", "others")),
                      _ms(cpu["cluster_ms_per_op"]), _ms(cpu["client_ms_per_op"]), *reference)
    return table


def _percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.0%}"


def bar_chart(runs: list[dict], width: int = 40) -> Table:
    """Throughput against clients as horizontal bars (for a sweep)."""
    table = Table(title="Throughput against clients", title_justify="left", show_header=False, box=None)
    table.add_column("clients", justify="right")
    table.add_column("kind")
    table.add_column("bar")
    table.add_column("ops/s", justify="right")
    peak = max([run[kind]["ops_per_s"] for run in runs for kind in ("put", "get")] + [1.0])
    for run in runs:
        for kind, style in (("put", "magenta"), ("get", "green")):
            rate = run[kind]["ops_per_s"]
            if run[kind]["count"]:
                bar = Text("█" * max(1, round(width * rate / peak)), style=style)
                label = f"{run['clients']} client" + ("" if run["clients"] == 1 else "s")
                table.add_row(label, kind.upper(), bar, f"{rate:,.0f}")
    return table


def header(settings: dict, environment: dict) -> Text:
    """One line saying what was measured: code, cluster, clients, workload."""
    length = f"{settings['ops']:,} operations" if settings["ops"] else f"{settings['duration_s']:g} s"
    code = f"rmi_kv {environment['rmi_kv']}" + (f" at {environment['git']}" if environment.get("git") else "")
    return Text(f"{code} · {len(settings['replicas'])} replicas · clients as {settings['mode']} · "
                f"write ratio {settings['write_ratio']:g} · {settings['value_size']}-byte values · "
                f"{settings['keys']:,} keys · {length} per run · {environment['cpus']} CPUs"
                + (" · early reply (PUT floor 2 RT + 2 W)" if settings.get("early_reply") else ""), style="bold")


def show(console: Console, document: dict, baselines: Baselines, sweep: bool) -> None:
    """Print what was measured, the baselines, the results and, for a sweep, the bar chart."""
    floors, runs = document["floor"], document["runs"]
    parts = [header(document["settings"], document["environment"]), baselines_table(baselines, floors),
             results_table(runs), health_table(runs), cpu_table(runs)]
    if sweep:
        parts.append(bar_chart(runs))
    console.print(Group(*parts))


# ----------------------------------------------------------------------- SVG
SERIES = (("put", "PUT", "#b03a8c"), ("get", "GET", "#2e8b57"), ("total", "all", "#4169e1"))


def _rate(run: dict, key: str) -> Optional[float]:
    """ops/s of one series in one run; None when the run had none (the total only for mixed runs)."""
    if key == "total":
        return run["ops_per_s"] if run["put"]["count"] and run["get"]["count"] else None
    return run[key]["ops_per_s"] if run[key]["count"] else None


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k that is at least ``value``."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power  # pragma: no cover


def svg_chart(runs: list[dict], title: str, width: int = 720, height: int = 420) -> str:
    """A line chart of ops/s against clients (x on a log2 scale), one line per kind."""
    left, right, top, bottom = 70, 130, 50, 60
    plot_w, plot_h = width - left - right, height - top - bottom
    counts = sorted({run["clients"] for run in runs})
    span = math.log2(counts[-1]) - math.log2(counts[0]) if len(counts) > 1 else 0.0
    y_max = _nice_ceiling(max([_rate(run, key) or 0.0 for run in runs for key, _, _ in SERIES] + [1.0]))

    def x_of(clients: int) -> float:
        return left + (plot_w / 2 if not span else plot_w * (math.log2(clients) - math.log2(counts[0])) / span)

    def y_of(rate: float) -> float:
        return top + plot_h * (1 - rate / y_max)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="24" text-anchor="middle" font-size="15">{escape(title)}</text>']
    for step in range(6):
        rate = y_max * step / 5
        y = y_of(rate)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{rate:,.0f}</text>')
    for clients in counts:
        x = x_of(clients)
        out.append(f'<line x1="{x:.1f}" y1="{top + plot_h}" x2="{x:.1f}" y2="{top + plot_h + 5}" stroke="black"/>')
        out.append(f'<text x="{x:.1f}" y="{top + plot_h + 20}" text-anchor="middle">{clients}</text>')
    out.append(f'<polyline points="{left},{top} {left},{top + plot_h} {left + plot_w},{top + plot_h}" '
               f'fill="none" stroke="black"/>')
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 15}" text-anchor="middle">clients</text>')
    out.append(f'<text x="18" y="{top + plot_h / 2}" text-anchor="middle" '
               f'transform="rotate(-90 18 {top + plot_h / 2})">operations per second</text>')
    legend_y = top + 10
    for key, label, colour in SERIES:
        rates = [(run["clients"], _rate(run, key)) for run in sorted(runs, key=lambda r: r["clients"])]
        points = [(x_of(clients), y_of(rate), rate) for clients, rate in rates if rate is not None]
        if not points:
            continue
        out.append(f'<polyline points="{" ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)}" fill="none" '
                   f'stroke="{colour}" stroke-width="2"/>')
        for x, y, rate in points:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>')
            out.append(f'<text x="{x + 6:.1f}" y="{y - 8:.1f}" fill="{colour}">{rate:,.0f}</text>')
        out.append(f'<line x1="{left + plot_w + 15}" y1="{legend_y}" x2="{left + plot_w + 40}" y2="{legend_y}" '
                   f'stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{left + plot_w + 46}" y="{legend_y + 4}">{label} ops/s</text>')
        legend_y += 20
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_chart(path: Path, runs: list[dict], title: str) -> None:
    """Write the SVG chart to ``path``."""
    Path(path).write_text(svg_chart(runs, title), encoding="utf-8")
