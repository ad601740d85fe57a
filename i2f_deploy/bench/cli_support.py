"""Argument handling of ``i2f-deploy bench``: artifact selection, lists, progress, outputs."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from rich.console import Console

from i2f_deploy import runtime
from i2f_deploy.bench.clicks import click_rows
from i2f_deploy.bench.gemm import gemm_gflop_per_s
from i2f_deploy.bench.report import print_click_table, print_table, write_csv, write_json, write_plot
from i2f_deploy.bench.runner import BACKENDS, Row, Settings, Target, run_bench
from i2f_deploy.bench.scenarios import SCENARIOS
from i2f_deploy.contract import REF_LABEL
from i2f_deploy.errors import I2FError
from i2f_deploy.options import comma_list, positive_ints
from i2f_deploy.outputs import check_output_file
from i2f_deploy.runtime.openvino_backend import PRECISIONS as OPENVINO_PRECISIONS

KERNEL_PATHS = ("function-body", "native")
PARTS = ("encoder", "decoder", "clicks")
PROFILED_SCENARIOS = ("first-click", "medium")  # the goals' clicks


def select_targets(artifact_dirs: list[Path], sizes: list[int] | None, checkpoint: Path | None) -> list[Target]:
    resolved = [directory.resolve() for directory in artifact_dirs]
    repeated = sorted({str(d) for d, r in zip(artifact_dirs, resolved) if resolved.count(r) > 1})
    if repeated:
        raise I2FError(f"artifact directory given more than once: {', '.join(repeated)}")
    targets = [Target(directory, checkpoint) for directory in artifact_dirs]
    if sizes:
        available = sorted({t.size for t in targets})
        missing = [size for size in sizes if size not in available]
        if missing:
            raise I2FError(f"--sizes {', '.join(map(str, missing))}: no artifact directory of that target size (have {available})")
        targets = [t for t in targets if t.size in sizes]
    return targets


def write_profiles(targets: list[Target], backends: list[str], scenarios: list[str], threads: int, path: Path,
                   console: Console, kernels: dict[str, tuple[str, ...]] | None = None, encoder: bool = True) -> None:
    """Per-operator time of one encoding (``encoder``) and of one click of each of ``scenarios`` on
    each graph backend (f32 exports; the click once per custom-op path in ``kernels``), as JSON
    and a table."""
    import numpy as np
    import torch

    from i2f_deploy.bench.profile import profile_onnxruntime, profile_onnxruntime_segments, profile_openvino
    from i2f_deploy.bench.runner import bench_image
    from i2f_deploy.bench.scenarios import scenario_prompt_map
    from i2f_deploy.contract import IMAGE, IMAGE_FEATURES

    profiles = []
    for target in [t for t in targets if t.precision == "f32"]:
        image = bench_image(target.size)
        encoder_path = target.artifact_dir / target.manifest.files.encoder.onnx
        work = sum(target.encoder_work().values())
        for backend, profiler in (("onnxruntime", profile_onnxruntime), ("openvino", profile_openvino)):
            if backend in backends and encoder:
                ops = profiler(encoder_path, {IMAGE: image}, threads, runs=1, limit=16)["ops"]
                total = sum(o["ms_per_run"] for o in ops)
                profiles.append({"size": target.size, "backend": backend, "part": "encoder", "scenario": "image",
                                 "threads": threads, "gflop": work, "ops": ops})
                top = ", ".join(f"{o['op_type']} {o['ms_per_run']:.0f} ms ({o['share']:.0%})" for o in ops[:5])
                console.print(f"profile {target.size} {backend} encoder ({work:.0f} GFLOP, {total:.0f} ms in the top "
                              f"operator types): {top}")
        with torch.no_grad():
            embeddings, edge_maps = target.model(target.routing).encode(torch.from_numpy(bench_image(target.size)))
        features = dict(zip(IMAGE_FEATURES, [t.numpy() for t in (embeddings, *edge_maps)]))
        features = runtime.load(target.artifact_dir, "decoder", "onnxruntime", verify=False).with_derived(features)
        onnx_path = target.artifact_dir / target.manifest.files.decoder.onnx
        paths = kernels or {}
        decoders = []
        for scenario in scenarios:
            feeds = {k: np.ascontiguousarray(v) for k, v in features.items()}
            feeds[REF_LABEL] = scenario_prompt_map(scenario, target.size)
            if "onnxruntime" in backends:
                decoders += [(scenario, "onnxruntime", partial(profile_onnxruntime, onnx_path, feeds, threads))
                             if path == "function-body" else
                             (scenario, "onnxruntime-native",
                              partial(profile_onnxruntime_segments, target.artifact_dir, feeds, threads))
                             for path in paths.get("onnxruntime", ("function-body",))]
            if "openvino" in backends:
                decoders += [(scenario, "openvino" if path == "function-body" else "openvino-native",
                              partial(profile_openvino, onnx_path, feeds, threads, native=path == "native"))
                             for path in paths.get("openvino", ("function-body",))]
        for scenario, backend, profile in decoders:
            summary = profile()
            ops, custom_ops = summary["ops"], summary["custom_ops"]
            profiles.append({"size": target.size, "routing": target.routing, "backend": backend, "part": "decoder",
                             "scenario": scenario, "threads": threads, "ops": ops, "custom_ops": custom_ops})
            top = ", ".join(f"{o['op_type']} {o['ms_per_run']:.1f} ms ({o['share']:.0%})" for o in ops[:5])
            per_op = ", ".join(f"{op} {ms:.1f} ms" for op, ms in custom_ops.items())
            console.print(f"profile {target.size} {backend} {scenario}: {top}; custom ops: {per_op}")
    path.write_text(json.dumps(profiles, indent=2))
    console.print(f"wrote {path}")


@dataclass(frozen=True)
class BenchRequest:
    """``i2f-deploy bench`` as given on the command line (lists still comma-separated text)."""

    artifact_dirs: list[Path]
    checkpoint: Path | None
    backends: str
    threads: str
    scenarios: str
    sizes: str | None
    precisions: str
    settings: Settings
    kernels: str | None = None  # None: both paths where the native kernels can run
    json_path: Path | None = None
    csv_path: Path | None = None
    plot_path: Path | None = None
    profile_path: Path | None = None
    parts: str = ",".join(PARTS)


def run(request: BenchRequest, console: Console) -> None:
    json_path, csv_path, plot_path, profile_path = request.json_path, request.csv_path, request.plot_path, request.profile_path
    for path, option in ((json_path, "--json"), (csv_path, "--csv"), (plot_path, "--plot"), (profile_path, "--profile")):
        check_output_file(path, option)
    sizes = positive_ints(request.sizes, "--sizes") if request.sizes else None
    chosen_backends = comma_list(request.backends, "--backends", BACKENDS)
    chosen_scenarios = comma_list(request.scenarios, "--scenarios", SCENARIOS)
    parts = comma_list(request.parts, "--parts", PARTS)
    thread_counts = positive_ints(request.threads, "--threads")
    for count in thread_counts:
        runtime.check_threads(count, "--threads")
    precisions = tuple(comma_list(request.precisions, "--precision", tuple(OPENVINO_PRECISIONS)))
    targets = select_targets(request.artifact_dirs, sizes, request.checkpoint)  # reads and verifies files
    start = time.perf_counter()

    def progress(message: str) -> None:
        console.print(f"[dim][{time.perf_counter() - start:7.1f}s][/dim] {message}", highlight=False)

    settings = replace(request.settings, openvino_precisions=precisions,
                       kernels=kernel_paths(request.kernels, chosen_backends, targets, progress))
    gemm_rates = {threads: gemm_gflop_per_s(threads) for threads in thread_counts}  # before the graphs load
    progress("f32 GEMM: " + ", ".join(f"{rate:.0f} GFLOP/s on {threads} thread(s)" for threads, rate in gemm_rates.items()))
    meta = {
        "artifacts": [str(t.artifact_dir) for t in targets],
        "machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                    "python": platform.python_version(),
                    "gemm_gflop_per_s": {str(threads): rate for threads, rate in gemm_rates.items()}},
        "settings": {**settings.record(), "threads": thread_counts},
    }

    def write(rows: list[Row]) -> None:
        """The report files of ``rows``: written when the decoder rows are done and again at the
        end, so that a run cut off during its click rows keeps them."""
        if json_path:
            write_json(rows, json_path, meta, gemm_rates)
        if csv_path:
            write_csv(rows, csv_path)
        if plot_path:
            write_plot(rows, plot_path)

    rows = run_bench(targets, chosen_backends, chosen_scenarios, thread_counts, settings, progress, parts)
    write(rows)
    clicks = click_rows(targets, chosen_backends, chosen_scenarios, thread_counts, settings, progress) if "clicks" in parts else []
    print_table(rows, console, gemm_rates)
    if clicks:
        print_click_table(clicks, console)
    write(rows + clicks)
    for path in (json_path, csv_path, plot_path):
        if path:
            console.print(f"wrote {path}")
    if profile_path:
        profiled = [s for s in PROFILED_SCENARIOS if s in chosen_scenarios] or chosen_scenarios[:1]
        write_profiles(targets, chosen_backends, profiled if "decoder" in parts else [], thread_counts[-1], profile_path,
                       console, settings.kernels, encoder="encoder" in parts)


def kernel_paths(requested: str | None, backends: list[str], targets: list[Target],
                 progress: Callable[[str], None]) -> dict[str, tuple[str, ...]]:
    """Per graph backend, the custom-op paths to time: as asked (a native path that cannot run is
    then refused by ``runtime.load``), else both where the native kernels can run."""
    graph_backends = [backend for backend in backends if backend in runtime.BACKENDS]
    if requested is not None:
        paths = tuple(comma_list(requested, "--kernels", KERNEL_PATHS))
        return dict.fromkeys(graph_backends, paths)
    chosen: dict[str, tuple[str, ...]] = {}
    for backend in graph_backends:
        segmented = all(t.manifest.files.decoder.segments is not None for t in targets)
        reason = runtime.native_unavailable(backend, segmented)
        if reason:
            progress(f"{backend} rows run the function bodies only: {reason}")
        chosen[backend] = ("function-body",) if reason else KERNEL_PATHS
    return chosen
