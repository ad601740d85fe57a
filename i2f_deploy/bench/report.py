"""Bench output: a rich table for people, JSON and CSV for machines, a PNG of latency vs routed
tokens, and the speed-up ratios the performance goals are stated in."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from i2f_deploy.bench.runner import Row

CSV_FIELDS = ("size", "backend", "routing", "part", "scenario", "threads", "median_ms", "p10_ms", "p90_ms",
              "peak_rss_mb", "num_routed", "dpe_box_area", "dlu_box_area", "gflop", "gflop_per_s", "graph_ms", "outside_ms")


def _key(row: Row) -> tuple:
    return row.size, row.threads, row.part, row.scenario


def speedups(rows: list[Row], gemm_rates: dict[int, float] | None = None) -> list[dict]:
    """Per size, threads, part and scenario: eager PyTorch (dynamic) time / each other row's time;
    with ``gemm_rates`` (GFLOP/s per thread count, measured in the run), each row's GFLOP/s as a
    share of that rate."""
    eager = {_key(r): r.median_ms for r in rows if r.backend == "torch" and r.routing == "dynamic"}
    dense = {(r.backend, *_key(r)): r.median_ms for r in rows if r.routing == "dense"}
    result = []
    for row in rows:
        if row.backend == "torch" and row.routing == "dynamic":
            continue
        entry = {"size": row.size, "threads": row.threads, "part": row.part, "scenario": row.scenario,
                 "backend": row.backend, "routing": row.routing}
        if _key(row) in eager:
            entry["vs_eager_torch"] = eager[_key(row)] / row.median_ms
        if row.routing == "dynamic" and (row.backend, *_key(row)) in dense:
            entry["vs_dense_same_backend"] = dense[(row.backend, *_key(row))] / row.median_ms
        if row.graph_ms is not None:
            entry["outside_graph"] = outside_graph(row)
        if gemm_rates and row.gflop_per_s is not None and row.threads in gemm_rates:
            entry["vs_gemm_rate"] = row.gflop_per_s / gemm_rates[row.threads]
        result.append(entry)
    return result


def outside_graph(row: Row) -> float:
    """A click row's time outside the graph as a share of the graph's time (0.15: 15 % on top)."""
    assert row.graph_ms is not None and row.outside_ms is not None, "only the rows of a click as the user makes it"
    return row.outside_ms / row.graph_ms


def print_click_table(rows: list[Row], console: Console) -> None:
    """The click as the user feels it (``bench.clicks``): wall time beside the graph's time."""
    table = Table(title="the click as the user feels it (ms; a 1536x1024 photo)")
    for column in ("size", "backend", "kernels", "part", "scenario", "thr", "median", "p10", "p90", "graph",
                   "outside", "outside graph %"):
        table.add_column(column, justify="left" if column in ("backend", "kernels", "part", "scenario") else "right")
    for r in rows:
        assert r.graph_ms is not None
        table.add_row(str(r.size), r.backend, str(r.settings.get("kernels", "")), r.part, r.scenario, str(r.threads),
                      f"{r.median_ms:.1f}", f"{r.p10_ms:.1f}", f"{r.p90_ms:.1f}", f"{r.graph_ms:.1f}",
                      f"{r.outside_ms:.1f}", f"{outside_graph(r):.0%}")
    console.print(table)


def print_table(rows: list[Row], console: Console, gemm_rates: dict[int, float] | None = None) -> None:
    """``gemm_rates``: the machine's f32 GEMM GFLOP/s per thread count, measured in the same run."""
    rates = gemm_rates or {}
    measured = ", ".join(f"{rate:.0f} GFLOP/s on {threads} thread(s)" for threads, rate in sorted(rates.items()))
    title = "i2f-deploy bench (ms; work per click in GFLOP)" + (f"; f32 GEMM {measured}" if measured else "")
    table = Table(title=title)
    for column in ("size", "backend", "routing", "part", "scenario", "thr", "median", "p10", "p90",
                   "peak MB", "routed", "DPE px", "DLU tok", "GFLOP", "GFLOP/s", "% GEMM", "× eager"):
        table.add_column(column, justify="right" if column not in ("backend", "routing", "part", "scenario") else "left")
    eager = {_key(r): r.median_ms for r in rows if r.backend == "torch" and r.routing == "dynamic"}

    def fmt(value, spec: str) -> str:
        return "" if value is None else format(value, spec)

    for r in rows:
        ratio = eager.get(_key(r))
        table.add_row(str(r.size), r.backend, r.routing, r.part, r.scenario, str(r.threads), f"{r.median_ms:.1f}",
                      f"{r.p10_ms:.1f}", f"{r.p90_ms:.1f}", f"{r.peak_rss_mb:.0f}", fmt(r.num_routed, "d"),
                      fmt(r.dpe_box_area, "d"), fmt(r.dlu_box_area, "d"), fmt(r.gflop, ".2f"),
                      fmt(r.gflop_per_s, ".1f"),
                      "" if r.gflop_per_s is None or r.threads not in rates else f"{r.gflop_per_s / rates[r.threads]:.0%}",
                      "" if ratio is None else f"{ratio / r.median_ms:.2f}")
    console.print(table)


def write_json(rows: list[Row], path: Path, meta: dict, gemm_rates: dict[int, float] | None = None) -> None:
    payload = {**meta, "rows": [r.to_dict() for r in rows], "speedups": speedups(rows, gemm_rates)}
    path.write_text(json.dumps(payload, indent=2))


def write_csv(rows: list[Row], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row.to_dict())


def write_plot(rows: list[Row], path: Path) -> None:
    """Decoder latency against routed tokens, one series per size, backend, routing and threads."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5), dpi=120)
    series: dict[str, list[Row]] = {}
    for row in rows:
        if row.part == "decoder":
            threads = f"{row.threads} thread" + ("s" if row.threads != 1 else "")
            series.setdefault(f"{row.size} {row.backend} {row.routing}, {threads}", []).append(row)
    for label, points in sorted(series.items()):
        points.sort(key=lambda r: r.num_routed or 0)
        axis.plot(np.array([p.num_routed for p in points], dtype=float), [p.median_ms for p in points], marker="o", label=label)
    axis.set_xlabel("routed tokens (full attention)")
    axis.set_ylabel("decoder latency per click, median ms")
    axis.set_yscale("log")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
