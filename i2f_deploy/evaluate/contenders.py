"""Who computes the model in an evaluation: the PyTorch reference and each backend x precision.

Every contender runs the official loop on each image by itself (its own clicks, from its own
masks): ``validate.clicks.click_loop`` deciding the clicks, ``validate.steps.LoopSteps`` (i.e.
``runtime.loop.advance``) playing them. Graph contenders import no torch.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from i2f_deploy import runtime
from i2f_deploy.contract import IMAGE, REF_LABEL, Manifest
from i2f_deploy.errors import I2FError
from i2f_deploy.preprocess import preprocess
from i2f_deploy.prompt_map import Click
from i2f_deploy.runtime.openvino_backend import PRECISIONS as OPENVINO_PRECISIONS
from i2f_deploy.validate.clicks import ClickRun, click_loop
from i2f_deploy.validate.steps import LoopSteps

__all__ = ["REFERENCE", "Contender", "ContenderRun", "GraphChoice", "check_precisions", "graph_choices", "load_contenders"]

REFERENCE = "pytorch"


@dataclass(frozen=True)
class GraphChoice:
    """One graph contender: its name in reports, backend, OpenVINO inference precision (None: the
    export's) and whether its encoder computes in reduced precision."""

    name: str
    backend: str
    precision: str | None
    reduced: bool


def graph_choices(manifest: Manifest, backends: list[str], precisions: list[str]) -> list[GraphChoice]:
    """Each backend x precision asked for. ``precisions`` are OpenVINO's inference precisions
    (ONNX Runtime computes the export's); a reduced-precision export runs as exported, as
    ``<backend>-<precision>``."""
    if precisions != ["f32"] and "openvino" not in backends:
        raise I2FError(f"--precision {','.join(precisions)}: inference precisions are OpenVINO's; add openvino to --backends")
    choices = []
    for backend in backends:
        exported = manifest.precision.encoder.on(backend)
        if exported != "f32":
            if backend == "openvino" and precisions != ["f32"]:
                raise I2FError(f"--precision: the export's OpenVINO encoder is {exported}; it runs as exported "
                               "(--precision chooses among f32 exports' inference precisions)")
            choices.append(GraphChoice(f"{backend}-{exported}", backend, None, True))
        elif backend == "openvino":
            choices += [GraphChoice(backend if p == "f32" else f"{backend}-{p}", backend, p, p != "f32") for p in precisions]
        else:
            choices.append(GraphChoice(backend, backend, None, False))
    return choices


def check_precisions(precisions: list[str]) -> None:
    unknown = [p for p in precisions if p not in OPENVINO_PRECISIONS]
    if unknown:
        raise I2FError(f"--precision: unknown {', '.join(unknown)}; choose from {', '.join(OPENVINO_PRECISIONS)}")


@dataclass
class ContenderRun:
    """One contender's loop on one image, with its timings."""

    loop: ClickRun
    encoder_ms: float
    click_ms: list[float]

    def record(self) -> dict:
        return {
            "ious": self.loop.ious,
            "clicks": [[c.y, c.x, c.positive] for c in self.loop.clicks],
            "encoder_ms": self.encoder_ms,
            "click_ms": self.click_ms,
        }


def _timed_loop(steps: LoopSteps, ground_truth: np.ndarray, num_clicks: int, seed: int | None) -> tuple[ClickRun, list[float]]:
    """``click_loop`` with each step timed. Ties are drawn per image from a fresh ``seed``, so a
    result does not depend on the order images run in (resume, --jobs)."""
    click_ms: list[float] = []

    def step(click: Click | None) -> np.ndarray:
        start = time.perf_counter()
        prediction = steps.step(click)
        click_ms.append((time.perf_counter() - start) * 1000)
        return prediction

    rng = random.Random(seed) if seed is not None else None
    return click_loop(step, ground_truth, num_clicks, rng), click_ms


@dataclass
class Contender:
    """A name, whether its encoder is of reduced precision, how it starts an image (the
    encoder's work, returning the loop's steps on that image) and the context its work runs in."""

    name: str
    reduced: bool
    begin: Callable[[np.ndarray], LoopSteps]
    context: Callable[[], AbstractContextManager] = nullcontext

    def run(self, image_rgb: np.ndarray, ground_truth: np.ndarray, num_clicks: int, seed: int | None) -> ContenderRun:
        with self.context():
            start = time.perf_counter()
            steps = self.begin(image_rgb)
            encoder_ms = (time.perf_counter() - start) * 1000
            loop, click_ms = _timed_loop(steps, ground_truth, num_clicks, seed)
        return ContenderRun(loop, encoder_ms, click_ms)


def graph_contender(artifact_dir: Path, size: int, choice: GraphChoice, threads: int | None) -> Contender:
    encoder = runtime.load(artifact_dir, "encoder", choice.backend, threads, choice.precision, verify=False)
    decoder = runtime.load(artifact_dir, "decoder", choice.backend, threads, choice.precision, verify=False)

    def begin(image_rgb: np.ndarray) -> LoopSteps:
        image, geometry = preprocess(image_rgb, size)
        features = encoder.run({IMAGE: image})
        return LoopSteps(lambda prompt_map: decoder.run({**features, REF_LABEL: prompt_map}), geometry)

    return Contender(choice.name, choice.reduced, begin)


def reference_contender(artifact_dir: Path, manifest: Manifest, checkpoint: Path | None, threads: int | None) -> Contender:
    """The PyTorch model the export was made from, stepping as validate's reference does."""
    import torch

    from i2f_deploy.reference import reference_model
    from i2f_deploy.validate.loops import ReferenceLoop
    from i2f_deploy.validate.runner import Tolerances, Validation

    if threads:
        torch.set_num_threads(threads)
    model = reference_model(artifact_dir, manifest, checkpoint)
    validation = Validation(artifact_dir, model, manifest, [], Tolerances())

    return Contender(REFERENCE, False, lambda image_rgb: ReferenceLoop(validation, image_rgb), torch.no_grad)


def load_contenders(artifact_dir: Path, checkpoint: Path | None, reference: bool, choices: list[GraphChoice],
                    threads: int | None) -> list[Contender]:
    """The reference first (when asked), then the graph contenders in ``choices`` order."""
    manifest = runtime.read_manifest(artifact_dir)
    found = [reference_contender(artifact_dir, manifest, checkpoint, threads)] if reference else []
    return found + [graph_contender(artifact_dir, manifest.target_size, choice, threads) for choice in choices]
