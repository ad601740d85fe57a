"""Timing rows: the encoder once per image and the decoder per click scenario, per backend.

Backends: ``torch`` (the project's PyTorch model, eager; with ``dense`` its dense-routing twin as
the baseline the paper compares against), ``onnxruntime`` and ``openvino`` on the artifact's
graphs. Every backend of one size sees the same image, the same prompt maps and the same cached
encoder features, so rows differ only by who computes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from i2f_deploy import runtime
from i2f_deploy.bench.memory import PeakSampler
from i2f_deploy.bench.scenarios import scenario_prompt_map
from i2f_deploy.bench.work import decoder_gflop
from i2f_deploy.config import ExportConfig, config_from_dict
from i2f_deploy.errors import I2FError
from i2f_deploy.model.inter2former import Inter2Former
from i2f_deploy.preprocess import preprocess
from i2f_deploy.validate.runner import reference_model
from i2f_deploy.validate.samples import builtin_samples

BACKENDS = ("torch", "onnxruntime", "openvino")
BENCH_IMAGE = "coffee-cup"
FEATURES = ("image_embeddings", "edge_map_0", "edge_map_1", "edge_map_2", "edge_map_3")


@dataclass(frozen=True)
class Settings:
    """Everything that changes a timing, recorded with every row."""

    threads: int
    repeat: int = 10
    warmup: int = 2
    ort_spinning: bool = True
    openvino_hint: str = "latency"
    openvino_streams: int | None = None
    openvino_precision: str = "f32"


@dataclass
class Row:
    size: int
    backend: str
    routing: str
    part: str
    scenario: str
    threads: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    peak_rss_mb: float
    num_routed: int | None = None
    dpe_box_area: int | None = None
    dlu_box_area: int | None = None
    gflop: float | None = None
    gflop_per_s: float | None = None
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _time(call: Callable[[], object], settings: Settings) -> tuple[list[float], float, object]:
    for _ in range(settings.warmup):
        call()
    timings = []
    with PeakSampler() as peak:
        for _ in range(settings.repeat):
            start = time.perf_counter()
            result = call()
            timings.append((time.perf_counter() - start) * 1000)
    return timings, peak.mb, result


def _quantiles(timings: list[float]) -> tuple[float, float, float]:
    ordered = np.asarray(timings)
    return float(np.median(ordered)), float(np.percentile(ordered, 10)), float(np.percentile(ordered, 90))


class Target:
    """One artifact directory and the PyTorch model its graphs were exported from."""

    def __init__(self, artifact_dir: Path, checkpoint: Path | None) -> None:
        self.artifact_dir = artifact_dir
        self.manifest = runtime.read_manifest(artifact_dir)
        self.config: ExportConfig = config_from_dict(self.manifest["config"])
        self.size = int(self.manifest["target_size"])
        self.routing = self.manifest.get("routing", "dynamic")
        self.checkpoint = checkpoint
        self._model: Inter2Former | None = None

    def model(self, routing: str) -> Inter2Former:
        """The PyTorch model with this export's weights and edge numerics, in either routing."""
        if self._model is None:
            self._model = reference_model(self.artifact_dir, self.manifest, self.checkpoint)
        if routing == self._model.routing:
            return self._model
        twin = Inter2Former(self._model.config, routing)
        twin.load_state_dict(self._model.state_dict())
        twin.edge_detector.use_numerics(self._model.edge_detector.numerics)
        twin.refresh_constants()
        return twin


def bench_image(size: int) -> np.ndarray:
    image = builtin_samples([BENCH_IMAGE])[0].image
    return preprocess(image, size)[0]


def _row(target: Target, backend: str, routing: str, part: str, scenario: str, settings: Settings,
         timings: list[float], peak: float) -> Row:
    median, p10, p90 = _quantiles(timings)
    recorded = asdict(settings)
    if backend != "onnxruntime":
        recorded.pop("ort_spinning")
    if backend != "openvino":
        for key in ("openvino_hint", "openvino_streams", "openvino_precision"):
            recorded.pop(key)
    return Row(target.size, backend, routing, part, scenario, settings.threads, median, p10, p90, peak, settings=recorded)


def _with_work(row: Row, config: ExportConfig, num_routed: int, dpe_box: list[int], dlu_box: list[int]) -> Row:
    row.num_routed = num_routed
    row.dpe_box_area = (dpe_box[2] - dpe_box[0]) * (dpe_box[3] - dpe_box[1])
    row.dlu_box_area = (dlu_box[2] - dlu_box[0]) * (dlu_box[3] - dlu_box[1])
    row.gflop = decoder_gflop(config, num_routed, dpe_box, dlu_box)
    row.gflop_per_s = row.gflop / (row.median_ms / 1000)
    return row


def bench_torch(target: Target, routing: str, scenarios: list[str], settings: Settings,
                features: dict[str, np.ndarray], image: np.ndarray, with_encoder: bool) -> list[Row]:
    torch.set_num_threads(settings.threads)
    model = target.model(routing)
    rows = []
    with torch.no_grad():
        if with_encoder:
            timings, peak, _ = _time(lambda: model.encode(torch.from_numpy(image)), settings)
            rows.append(_row(target, "torch", routing, "encoder", "image", settings, timings, peak))
        embeddings = torch.from_numpy(features["image_embeddings"])
        edge_maps = [torch.from_numpy(features[f"edge_map_{i}"]) for i in range(4)]
        for scenario in scenarios:
            ref_label = torch.from_numpy(scenario_prompt_map(scenario, target.size))
            timings, peak, result = _time(lambda: model.decode_detailed(embeddings, edge_maps, ref_label), settings)
            row = _row(target, "torch", routing, "decoder", scenario, settings, timings, peak)
            rows.append(_with_work(row, target.config, result.routed_tokens.numel(),
                                   result.routing.box_values.tolist(), result.dlu_box.as_tensor().tolist()))
    return rows


def bench_graphs(target: Target, backend: str, scenarios: list[str], settings: Settings,
                 features: dict[str, np.ndarray], image: np.ndarray) -> list[Row]:
    load_options = {
        "threads": settings.threads,
        "precision": settings.openvino_precision,
        "spinning": settings.ort_spinning,
        "performance_hint": settings.openvino_hint,
        "streams": settings.openvino_streams,
    }
    encoder = runtime.load(target.artifact_dir, "encoder", backend, **load_options)
    decoder = runtime.load(target.artifact_dir, "decoder", backend, **load_options)
    timings, peak, _ = _time(lambda: encoder.run({"image": image}), settings)
    rows = [_row(target, backend, target.routing, "encoder", "image", settings, timings, peak)]
    for scenario in scenarios:
        feeds = {**features, "ref_label": scenario_prompt_map(scenario, target.size)}
        timings, peak, out = _time(lambda: decoder.run(feeds), settings)
        row = _row(target, backend, target.routing, "decoder", scenario, settings, timings, peak)
        rows.append(_with_work(row, target.config, int(out["num_routed"]), out["dpe_box"].tolist(), out["dlu_box"].tolist()))
    return rows


def check_backends(names: list[str]) -> list[str]:
    unknown = [name for name in names if name not in BACKENDS]
    if unknown:
        raise I2FError(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
    return list(dict.fromkeys(names))


def run_bench(targets: list[Target], backends: list[str], scenarios: list[str], threads: list[int],
              base: Settings, progress: Callable[[str], None]) -> list[Row]:
    """Every target x thread count x backend; ``torch`` also times the dense twin of a dynamic export."""
    rows: list[Row] = []
    for target in targets:
        image = bench_image(target.size)
        reference = target.model(target.routing)
        with torch.no_grad():
            embeddings, edge_maps = reference.encode(torch.from_numpy(image))
        features = dict(zip(FEATURES, [t.numpy() for t in (embeddings, *edge_maps)]))
        for count in threads:
            settings = Settings(**{**asdict(base), "threads": count})
            for backend in backends:
                progress(f"{target.size} {target.routing} {backend}, {count} thread(s)")
                if backend == "torch":
                    rows += bench_torch(target, target.routing, scenarios, settings, features, image, True)
                    if target.routing == "dynamic":
                        progress(f"{target.size} dense torch baseline, {count} thread(s)")
                        rows += bench_torch(target, "dense", scenarios, settings, features, image, False)
                else:
                    rows += bench_graphs(target, backend, scenarios, settings, features, image)
    return rows
