"""What an evaluation reports: the summary per contender (JSON, CSV, a rich table), a CSV row
per image and contender, and a plot of mIoU against clicks with NoC bars."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from i2f_deploy.evaluate.metrics import latency_summary, summary
from i2f_deploy.validate.clicks import NOC_THRESHOLDS, noc

__all__ = ["build_summary", "first_difference", "print_table", "write_outputs"]

THRESHOLD_KEYS = [f"{round(t * 100)}" for t in NOC_THRESHOLDS]
MAX_LISTED = 20  # skipped images and differing images printed; all of them are in summary.json


def first_difference(agreement: Sequence[float], bar: float) -> int | None:
    """The first 1-based click whose mask IoU against the reference's is below ``bar``."""
    return next((i + 1 for i, value in enumerate(agreement) if value < bar), None)


def build_summary(header: dict, records: list[dict], bars: dict[str, float]) -> dict:
    """Metrics of each contender over the images every contender ran on; ``bars``: per graph
    contender, the mask IoU against the reference below which a click differs (empty without a
    reference)."""
    evaluated = [r for r in records if "problem" not in r]
    contenders = header["contenders"]
    per_contender = {}
    for name in contenders:
        runs = [r["contenders"][name] for r in evaluated]
        per_contender[name] = {
            **summary([run["ious"] for run in runs], header["clicks"]),
            "latency": latency_summary([run["encoder_ms"] for run in runs], [ms for run in runs for ms in run["click_ms"]]),
        }
    differences = []
    for record in evaluated:
        found = {name: first_difference(record["contenders"][name]["agreement"], bar)
                 for name, bar in bars.items()}
        differing = {name: click for name, click in found.items() if click is not None}
        if differing:
            differences.append({"name": record["name"], "first_difference": min(differing.values()), "contenders": differing})
    return {
        **header,
        "images": len(records),
        "evaluated": len(evaluated),
        "problems": [{"name": r["name"], "problem": r["problem"]} for r in records if "problem" in r],
        "difference_bars": bars,
        "contender_metrics": per_contender,
        "differences": differences,
    }


def print_table(result: dict, console: Console) -> None:
    clicks = result["clicks"]
    picked = [k for k in (1, 2, 3, 5, 10, clicks) if k <= clicks]
    picked = list(dict.fromkeys(picked))
    table = Table(title=f"evaluate {result['dataset']} at {result['target_size']}: {result['evaluated']} image(s), "
                        f"{clicks} clicks")
    columns = ["contender", *(f"NoC@{k}" for k in THRESHOLD_KEYS), *(f"NoF@{k}" for k in THRESHOLD_KEYS),
               *(f"mIoU@{k}" for k in picked), "encoder ms", "click ms (median)"]
    for column in columns:
        table.add_column(column, justify="left" if column == "contender" else "right")
    for name, metrics in result["contender_metrics"].items():
        if not metrics["images"]:
            continue
        latency = metrics["latency"]
        table.add_row(name, *(f"{metrics['noc'][k]:.2f}" for k in THRESHOLD_KEYS), *(str(metrics["nof"][k]) for k in THRESHOLD_KEYS),
                      *(f"{metrics['miou'][k - 1]:.4f}" for k in picked), f"{latency['encoder_ms_mean']:.0f}",
                      f"{latency['click_ms_median']:.0f}")
    console.print(table)
    for problem in result["problems"][:MAX_LISTED]:
        console.print(f"[yellow]skipped[/yellow] {problem['name']}: {problem['problem']}", highlight=False, soft_wrap=True)
    if result["problems"]:
        console.print(f"{len(result['problems'])} of {result['images']} image(s) skipped (missing or unreadable files; "
                      "all listed in summary.json)", highlight=False)
    if result["difference_bars"]:
        bars = ", ".join(f"{name} {bar}" for name, bar in result["difference_bars"].items())
        console.print(f"masks against the reference (mask IoU below which a click differs: {bars}): "
                      f"{len(result['differences'])} of {result['evaluated']} image(s) differ", highlight=False, soft_wrap=True)
        for difference in result["differences"][:MAX_LISTED]:
            where = ", ".join(f"{name} at click {click}" for name, click in difference["contenders"].items())
            console.print(f"  {difference['name']}: {where}", highlight=False, soft_wrap=True)
        if len(result["differences"]) > MAX_LISTED:
            console.print(f"  ... {len(result['differences']) - MAX_LISTED} more in summary.json and images.csv", highlight=False)


def _summary_rows(result: dict) -> list[dict]:
    rows = []
    for name, metrics in result["contender_metrics"].items():
        row = {"contender": name, "images": metrics["images"]}
        if metrics["images"]:
            row.update({f"noc{k}": metrics["noc"][k] for k in THRESHOLD_KEYS})
            row.update({f"nof{k}": metrics["nof"][k] for k in THRESHOLD_KEYS})
            row.update({f"miou@{i + 1}": v for i, v in enumerate(metrics["miou"])})
            row.update(metrics["latency"])
        rows.append(row)
    return rows


def _image_rows(records: list[dict], bars: dict[str, float]) -> list[dict]:
    rows = []
    for record in records:
        if "problem" in record:
            rows.append({"image": record["name"], "problem": record["problem"]})
            continue
        for name, run in record["contenders"].items():
            nocs = noc(run["ious"], NOC_THRESHOLDS, len(run["ious"]))
            row = {"image": record["name"], "contender": name, **{f"noc{k}": v for k, v in zip(THRESHOLD_KEYS, nocs.values())},
                   "iou@1": run["ious"][0], "iou@last": run["ious"][-1], "encoder_ms": run["encoder_ms"],
                   "click_ms_mean": sum(run["click_ms"]) / len(run["click_ms"])}
            if name in bars:
                row["first_difference"] = first_difference(run["agreement"], bars[name])
            rows.append(row)
    return rows


def _write_csv(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def write_plot(result: dict, path: Path) -> None:
    """mIoU against clicks, one line per contender; NoC@85/90/95 bars side by side."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, (curves, bars) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=110)
    measured = {name: m for name, m in result["contender_metrics"].items() if m["images"]}
    width = 0.8 / max(len(measured), 1)
    for index, (name, metrics) in enumerate(measured.items()):
        clicks = range(1, len(metrics["miou"]) + 1)
        curves.plot(list(clicks), metrics["miou"], marker="o", markersize=3, label=name)
        positions = [i + (index - (len(measured) - 1) / 2) * width for i in range(len(THRESHOLD_KEYS))]
        bars.bar(positions, [metrics["noc"][k] for k in THRESHOLD_KEYS], width, label=name)
    curves.xaxis.set_major_locator(MaxNLocator(integer=True))
    curves.set_xlabel("clicks")
    curves.set_ylabel("mIoU")
    curves.set_title(f"{result['dataset']} at {result['target_size']} ({result['evaluated']} images)", fontsize=9)
    curves.grid(True, alpha=0.3)
    curves.legend(fontsize=8)
    bars.set_xticks(range(len(THRESHOLD_KEYS)), [f"NoC@{k}" for k in THRESHOLD_KEYS])
    bars.set_ylabel("mean clicks (lower is better)")
    bars.grid(True, axis="y", alpha=0.3)
    bars.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write_outputs(out: Path, result: dict, records: list[dict]) -> list[Path]:
    """summary.json, summary.csv (a row per contender), images.csv (a row per image and
    contender) and plot.png in ``out``; returns the paths written."""
    paths = [out / "summary.json", out / "summary.csv", out / "images.csv", out / "plot.png"]
    out.mkdir(parents=True, exist_ok=True)
    paths[0].write_text(json.dumps(result, indent=2) + "\n")
    _write_csv(paths[1], _summary_rows(result))
    _write_csv(paths[2], _image_rows(records, result["difference_bars"]))
    write_plot(result, paths[3])
    return paths
