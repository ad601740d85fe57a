"""Argument handling of ``i2f-deploy bench``: artifact selection, lists, progress, outputs."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

from rich.console import Console

from i2f_deploy.bench.report import print_table, write_csv, write_json, write_plot
from i2f_deploy.bench.runner import Settings, Target, check_backends, run_bench
from i2f_deploy.bench.scenarios import parse_scenarios
from i2f_deploy.errors import I2FError


def parse_list(text: str, option: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise I2FError(f"{option}: give at least one value")
    return items


def parse_ints(text: str, option: str) -> list[int]:
    values = []
    for item in parse_list(text, option):
        if not item.isdigit() or int(item) <= 0:
            raise I2FError(f"{option}: {item!r} is not a positive integer")
        values.append(int(item))
    return values


def select_targets(artifact_dirs: list[Path], sizes: list[int] | None, checkpoint: Path | None) -> list[Target]:
    targets = [Target(directory, checkpoint) for directory in artifact_dirs]
    if sizes:
        available = sorted({t.size for t in targets})
        missing = [size for size in sizes if size not in available]
        if missing:
            raise I2FError(f"--sizes {', '.join(map(str, missing))}: no artifact directory of that target size (have {available})")
        targets = [t for t in targets if t.size in sizes]
    return targets


def run(artifact_dirs: list[Path], checkpoint: Path | None, backends: str, threads: str, scenarios: str,
        sizes: str | None, settings: Settings, json_path: Path | None, csv_path: Path | None,
        plot_path: Path | None, console: Console) -> None:
    for path in (json_path, csv_path, plot_path):
        if path is not None and not path.parent.exists():
            raise I2FError(f"cannot write {path}: directory {path.parent} does not exist")
    targets = select_targets(artifact_dirs, parse_ints(sizes, "--sizes") if sizes else None, checkpoint)
    chosen_backends = check_backends(parse_list(backends, "--backends"))
    chosen_scenarios = parse_scenarios(parse_list(scenarios, "--scenarios"))
    thread_counts = parse_ints(threads, "--threads")
    start = time.perf_counter()

    def progress(message: str) -> None:
        console.print(f"[dim][{time.perf_counter() - start:7.1f}s][/dim] {message}", highlight=False)

    rows = run_bench(targets, chosen_backends, chosen_scenarios, thread_counts, settings, progress)
    print_table(rows, console)
    meta = {
        "artifacts": [str(t.artifact_dir) for t in targets],
        "machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                    "python": platform.python_version()},
        "settings": {"repeat": settings.repeat, "warmup": settings.warmup, "ort_spinning": settings.ort_spinning,
                     "openvino_hint": settings.openvino_hint, "openvino_streams": settings.openvino_streams,
                     "openvino_precision": settings.openvino_precision, "threads": thread_counts},
    }
    if json_path:
        write_json(rows, json_path, meta)
        console.print(f"wrote {json_path}")
    if csv_path:
        write_csv(rows, csv_path)
        console.print(f"wrote {csv_path}")
    if plot_path:
        write_plot(rows, plot_path)
        console.print(f"wrote {plot_path}")
