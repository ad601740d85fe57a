"""Timing rows: the encoder once per image and the decoder per click scenario, per backend.

Backends: ``torch`` (the project's PyTorch model, eager; with ``dense`` its dense-routing twin as
the baseline the paper compares against), ``onnxruntime`` and ``openvino`` on the artifact's
graphs. An export of reduced precision (``export --precision bf16|int8``) adds its encoder rows,
named ``<backend>-<precision>``, next to the f32 export's of the same size (its decoder is the
f32 one: not timed twice). Every backend of one size sees the same image, the same prompt maps and the same cached
encoder features, so rows differ only by who computes them. They are timed in turns, one run of
each per round, so ratios within a run are fair on a machine whose speed drifts (this 2-core VM
varied by 30 % over minutes). Eager PyTorch runs in a process of its own (``bench.eager``): in
the bench's process its time depended on the runtimes loaded beside it. The graph backends'
decoders are loaded together, so the peak resident memory of a decoder row is the bench
process's during its round (eager PyTorch's process is not counted), not one backend's. Encoders
take seconds per run and gigabytes at 2048: they are loaded and timed one after the other.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import torch

from i2f_deploy import runtime
from i2f_deploy.bench.eager import EagerProcess
from i2f_deploy.bench.memory import PeakSampler
from i2f_deploy.bench.scenarios import scenario_prompt_map
from i2f_deploy.bench.work import decoder_work, encoder_work
from i2f_deploy.config import ExportConfig, config_from_dict
from i2f_deploy.contract import DLU_BOX, DPE_BOX, IMAGE, IMAGE_FEATURES, NUM_ROUTED, REF_LABEL
from i2f_deploy.model.inter2former import Inter2Former
from i2f_deploy.preprocess import preprocess
from i2f_deploy.reference import check_weights, in_routing, reference_model
from i2f_deploy.runtime.options import OpenVinoOptions, OrtOptions
from i2f_deploy.samples import builtin_samples

BACKENDS = ("torch", "onnxruntime", "openvino")
BENCH_IMAGE = "coffee-cup"


@dataclass(frozen=True)
class Settings:
    """Everything that changes a timing, recorded with every row."""

    threads: int
    repeat: int = 10
    warmup: int = 2
    settle_ms: int = 50  # pause after each timed run (see _round_robin)
    ort: OrtOptions = OrtOptions()  # ONNX Runtime's contenders run with these
    openvino: OpenVinoOptions = OpenVinoOptions()  # and OpenVINO's with these
    openvino_precisions: tuple[str, ...] = ("f32",)  # one OpenVINO contender each; f32 is "openvino"
    kernels: dict[str, tuple[str, ...]] = field(default_factory=dict)  # per graph backend, each path a contender
    # (none listed: the function bodies); native ones are "<label>-native"

    def record(self) -> dict[str, object]:
        """The settings as the JSON report records them (each backend's options flat)."""
        return {"threads": self.threads, "repeat": self.repeat, "warmup": self.warmup, "settle_ms": self.settle_ms,
                "ort_spinning": self.ort.spinning, "openvino_hint": self.openvino.performance_hint,
                "openvino_streams": self.openvino.streams, "openvino_precisions": self.openvino_precisions,
                "kernels": {backend: list(paths) for backend, paths in self.kernels.items()}}


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
    gflop_parts: dict | None = None  # dpe, neck, dlu
    gflop_per_s: float | None = None
    graph_ms: float | None = None  # a click as the user makes it (bench.clicks): the graph's median time in it
    outside_ms: float | None = None  # and the median of each click's time outside the graph
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


T = TypeVar("T")


@dataclass
class Timed(Generic[T]):
    """A call's result with the time it took where it ran: a contender in a process of its own
    times itself, so the pipe to it is not counted."""

    ms: float
    value: T


def _round_robin(calls: Sequence[Callable[[], T | Timed[T]]], settings: Settings
                 ) -> tuple[list[list[float]], float, list[T]]:
    """Time ``calls`` in turns (one run of each per round), so that a machine slowing down or
    speeding up mid-run affects every contender alike and their ratios stay fair. Each timed run
    is followed by an untimed pause: thread pools spin-wait after a run (ONNX Runtime's intra-op
    threads, PyTorch's OpenMP ones), and on two cores the next contender would share them. A call
    returning ``Timed`` is taken at its own time."""
    for call in calls:
        for _ in range(settings.warmup):
            call()
    time.sleep(settings.settle_ms / 1000)
    timings: list[list[float]] = [[] for _ in calls]
    results: list[Any] = [None] * len(calls)  # each call's last result
    with PeakSampler() as peak:
        for _ in range(settings.repeat):
            for index, call in enumerate(calls):
                start = time.perf_counter()
                result = call()
                elapsed_ms = (time.perf_counter() - start) * 1000
                if isinstance(result, Timed):
                    elapsed_ms, result = result.ms, result.value
                results[index] = result
                timings[index].append(elapsed_ms)
                time.sleep(settings.settle_ms / 1000)
    return timings, peak.mb, results


def quantiles(timings: list[float]) -> tuple[float, float, float]:
    ordered = np.asarray(timings)
    return float(np.median(ordered)), float(np.percentile(ordered, 10)), float(np.percentile(ordered, 90))


class Target:
    """One artifact directory and the PyTorch model its graphs were exported from."""

    def __init__(self, artifact_dir: Path, checkpoint: Path | None) -> None:
        self.artifact_dir = artifact_dir
        self.manifest = runtime.read_manifest(artifact_dir)
        # every graph file checked once, before any work; the loads below skip it
        self.manifest.verify(artifact_dir)
        self.config: ExportConfig = config_from_dict(self.manifest.config)
        self.size = self.manifest.target_size
        self.routing = self.manifest.routing
        self.precision = self.manifest.precision.choice
        check_weights(artifact_dir, self.manifest, checkpoint)
        self.checkpoint = checkpoint
        self._model: Inter2Former | None = None
        self._encoder_work: dict[str, float] | None = None

    def encoder_work(self) -> dict[str, float]:
        """GFLOP of one encoding of the bench image, by part (see ``bench.work.encoder_work``)."""
        if self._encoder_work is None:
            self._encoder_work = encoder_work(self.model(self.routing), torch.from_numpy(bench_image(self.size)))
        return self._encoder_work

    def model(self, routing: str) -> Inter2Former:
        """The PyTorch model with this export's weights and edge numerics, in either routing."""
        if self._model is None:
            self._model = reference_model(self.artifact_dir, self.manifest, self.checkpoint)
        return in_routing(self._model, routing)


def bench_image(size: int) -> np.ndarray:
    image = builtin_samples([BENCH_IMAGE])[0].image
    return preprocess(image, size)[0]


def _row(target: Target, contender: Contender, part: str, scenario: str, settings: Settings,
         timings: list[float], peak: float) -> Row:
    median, p10, p90 = quantiles(timings)
    recorded = settings.record()
    recorded.pop("openvino_precisions")
    recorded["kernels"] = contender.kernels
    recorded["export_precision"] = target.precision
    if contender.backend != "onnxruntime":
        recorded.pop("ort_spinning")
    if contender.precision is None:
        for key in ("openvino_hint", "openvino_streams"):
            recorded.pop(key)
    else:
        recorded["openvino_precision"] = contender.precision
    return Row(target.size, contender.backend, contender.routing, part, scenario, settings.threads, median, p10, p90,
               peak, settings=recorded)


def _with_work(row: Row, config: ExportConfig, num_routed: int, dpe_box: list[int], dlu_box: list[int]) -> Row:
    """Work as this row's contender computes it: the graphs' DLU is factored, eager PyTorch's direct."""
    row.num_routed = num_routed
    row.dpe_box_area = (dpe_box[2] - dpe_box[0]) * (dpe_box[3] - dpe_box[1])
    row.dlu_box_area = (dlu_box[2] - dlu_box[0]) * (dlu_box[3] - dlu_box[1])
    row.gflop_parts = decoder_work(config, num_routed, dpe_box, dlu_box, factored=row.backend != "torch")
    row.gflop = sum(row.gflop_parts.values())
    row.gflop_per_s = row.gflop / (row.median_ms / 1000)
    return row


@dataclass
class RoutingOutcome:
    """What a decoder call decided: the work it did follows from these."""

    num_routed: int
    dpe_box: list[int]
    dlu_box: list[int]


@dataclass
class Contender:
    """One way of computing the model: a backend on the graphs, or PyTorch in either routing."""

    backend: str
    routing: str
    load_encoder: Callable[[], Callable[[], object]] | None  # loaded only while it is timed
    decode: Callable[[np.ndarray], RoutingOutcome | Timed[RoutingOutcome]]
    precision: str | None = None  # OpenVINO's inference precision
    kernels: str | None = None  # how a graph backend runs the custom ops: "native" or "function-body"
    close: Callable[[], None] = lambda: None


def torch_contender(target: Target, routing: str, settings: Settings, features: dict[str, np.ndarray],
                    image: np.ndarray, with_encoder: bool) -> Contender:
    """Eager PyTorch in a process of its own (``bench.eager``), timing itself."""
    process = EagerProcess(target.artifact_dir, target.checkpoint, routing, settings.threads, image, features)

    def encode() -> Timed[None]:
        return Timed(process.encode(), None)

    def decode(ref_label: np.ndarray) -> Timed[RoutingOutcome]:
        elapsed_ms, (num_routed, dpe_box, dlu_box) = process.decode(ref_label)
        return Timed(elapsed_ms, RoutingOutcome(num_routed, dpe_box, dlu_box))

    return Contender("torch", routing, (lambda: encode) if with_encoder else None, decode, close=process.close)


def graph_contender(target: Target, backend: str, settings: Settings, features: dict[str, np.ndarray],
                    image: np.ndarray, precision: str | None = "f32", kernels: str = "function-body") -> Contender:
    """``precision``: OpenVINO's inference precision; None for the export's own. ``kernels``: the
    custom ops' path; a native contender times no encoder (it has no custom op: the same graph)."""
    load_options: dict[str, Any] = {
        "threads": settings.threads,
        "precision": precision,
        "options": settings.ort if backend == "onnxruntime" else settings.openvino,
        "verify": False,  # done by Target
    }
    decoder = runtime.load(target.artifact_dir, "decoder", backend, kernels=kernels, **load_options)
    features = decoder.with_derived(features)  # per image, as a session gets them from its encoder

    def load_encoder() -> Callable[[], object]:
        encoder = runtime.load(target.artifact_dir, "encoder", backend, **load_options)
        return lambda: encoder.run({IMAGE: image})

    def decode(ref_label: np.ndarray) -> RoutingOutcome:
        out = decoder.run({**features, REF_LABEL: ref_label})
        return RoutingOutcome(int(out[NUM_ROUTED]), out[DPE_BOX].tolist(), out[DLU_BOX].tolist())

    exported = target.manifest.precision.encoder.on(backend)
    if exported != "f32":
        return Contender(f"{backend}-{exported}", target.routing, load_encoder, decode,
                         exported if backend == "openvino" else None, decoder.kernels)
    label = backend if backend != "openvino" or precision == "f32" else f"{backend}-{precision}"
    openvino_precision = precision if backend == "openvino" else None
    if kernels == "native":
        return Contender(f"{label}-native", target.routing, None, decode, openvino_precision, decoder.kernels)
    return Contender(label, target.routing, load_encoder, decode, openvino_precision, decoder.kernels)


def contenders_for(target: Target, backends: list[str], settings: Settings, features: dict[str, np.ndarray],
                   image: np.ndarray) -> list[Contender]:
    """``torch`` brings its dense twin along when the export routes dynamically (the paper's baseline).
    A reduced-precision export brings its graphs of reduced precision only."""
    if target.precision != "f32":
        return [graph_contender(target, backend, settings, features, image, None) for backend in backends
                if backend != "torch" and target.manifest.precision.encoder.on(backend) != "f32"]
    contenders = []
    for backend in backends:
        if backend == "torch":
            contenders.append(torch_contender(target, target.routing, settings, features, image, True))
            if target.routing == "dynamic":
                contenders.append(torch_contender(target, "dense", settings, features, image, False))
        else:
            for precision in settings.openvino_precisions if backend == "openvino" else ("f32",):
                for kernels in settings.kernels.get(backend, ("function-body",)):
                    contenders.append(graph_contender(target, backend, settings, features, image, precision, kernels))
    return contenders


def bench_round(target: Target, contenders: list[Contender], scenarios: list[str], settings: Settings,
                progress: Callable[[str], None], parts: Sequence[str] = ("encoder", "decoder")) -> list[Row]:
    """The encoder once per image, one contender after the other (at 2048 all encoders together
    exceed 24 GB); then each scenario's click, every contender in turns (of ``parts``)."""
    torch.set_num_threads(settings.threads)
    rows: list[Row] = []
    for contender in contenders:
        if contender.load_encoder is None or "encoder" not in parts:
            continue
        progress(f"{target.size} encoder: {contender.backend}, {settings.threads} thread(s)")
        encode = contender.load_encoder()
        timings, peak, _ = _round_robin([encode], settings)
        row = _row(target, contender, "encoder", "image", settings, timings[0], peak)
        work = target.encoder_work()
        row.gflop_parts = work if contender.backend != "torch" else {**work, "edge_terms": 0.0}
        row.gflop = sum(row.gflop_parts.values())
        row.gflop_per_s = row.gflop / (row.median_ms / 1000)
        rows.append(row)
        del encode
        gc.collect()
    for scenario in scenarios if target.precision == "f32" and "decoder" in parts else ():  # reduced: f32 decoders
        progress(f"{target.size} {scenario} click: {', '.join(f'{c.backend} {c.routing}' for c in contenders)}")
        ref_label = scenario_prompt_map(scenario, target.size)
        calls = [partial(c.decode, ref_label) for c in contenders]
        timings, peak, decisions = _round_robin(calls, settings)
        for contender, measured, decision in zip(contenders, timings, decisions):
            row = _row(target, contender, "decoder", scenario, settings, measured, peak)
            rows.append(_with_work(row, target.config, decision.num_routed, decision.dpe_box, decision.dlu_box))
    return rows


def run_bench(targets: list[Target], backends: list[str], scenarios: list[str], threads: list[int],
              base: Settings, progress: Callable[[str], None], parts: Sequence[str] = ("encoder", "decoder")) -> list[Row]:
    """Every target x thread count; within one, all backends are timed in turns (see ``_round_robin``)."""
    rows: list[Row] = []
    if not {"encoder", "decoder"} & set(parts):
        return rows
    for target in targets:
        image = bench_image(target.size)
        reference = target.model(target.routing)
        with torch.no_grad():
            embeddings, edge_maps = reference.encode(torch.from_numpy(image))
        features = dict(zip(IMAGE_FEATURES, [t.numpy() for t in (embeddings, *edge_maps)]))
        for count in threads:
            settings = Settings(**{**asdict(base), "threads": count})
            progress(f"{target.size}: loading {', '.join(backends)} with {count} thread(s)")
            contenders = contenders_for(target, backends, settings, features, image)
            try:
                rows += bench_round(target, contenders, scenarios, settings, progress, parts)
            finally:
                for contender in contenders:
                    contender.close()
            del contenders
    return rows
