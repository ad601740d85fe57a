"""Argument handling of ``i2f-deploy validate``: images, tolerances, bf16 report."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
from rich.console import Console

from i2f_deploy import runtime
from i2f_deploy.compare import logits_iou
from i2f_deploy.contract import LOGITS, REF_LABEL
from i2f_deploy.errors import I2FError, InputError
from i2f_deploy.evaluate.datasets import DatasetSpec, Sample, entries, load
from i2f_deploy.options import comma_list
from i2f_deploy.outputs import check_output_file
from i2f_deploy.preprocess import read_image_rgb
from i2f_deploy.reference import reference_model
from i2f_deploy.runtime import BACKENDS
from i2f_deploy.validate.report import print_table, to_json, write_json
from i2f_deploy.validate.runner import Tolerances, Validation
from i2f_deploy.validate.states import edge_case_states


def parse_tolerances(overrides: list[str]) -> Tolerances:
    tolerances = Tolerances()
    names = [f.name for f in dataclasses.fields(Tolerances)]
    for item in overrides:
        name, _, value = item.partition("=")
        if name not in names or not value:
            raise I2FError(f"--tolerance {item!r}: expected NAME=VALUE with NAME in {', '.join(names)}")
        try:
            tolerances = tolerances.overridden(name, float(value))
        except ValueError:
            raise I2FError(f"--tolerance {item!r}: {value!r} is not a number") from None
    return tolerances


def bf16_report(validation: Validation, decoder: runtime.GraphRunner, name: str, features: dict[str, np.ndarray]) -> list[dict]:
    """What OpenVINO's reduced default precision costs on the decoder (``decoder`` loaded with
    bf16), on one image's edge-case states: reported and never judged."""
    rows = []
    for case, ref_label in edge_case_states(validation.size).items():
        reference = validation.reference_logits[(name, case)]
        logits = decoder.run({**features, REF_LABEL: ref_label})[LOGITS]
        rows.append({"case": f"{name}/{case}", "max_abs": float(np.abs(logits - reference).max()), "iou": logits_iou(logits, reference)})
    return rows


@dataclass(frozen=True)
class ValidateRequest:
    """``i2f-deploy validate`` as given on the command line."""

    artifact_dir: Path
    checkpoint: Path | None = None
    backends: str = ",".join(BACKENDS)
    images: list[Path] = field(default_factory=list)
    tolerances: list[str] = field(default_factory=list)
    report: Path | None = None
    clicks: int = 20
    seed: int | None = None
    samples: list[str] | None = None
    dataset: str | None = None
    limit: int | None = None


def _dataset_samples(text: str, limit: int | None, console: Console, problems: list[dict]) -> Iterator[Sample]:
    """The readable images of ``--dataset`` (the first ``limit`` entries) one at a time; the
    others reported and recorded."""
    for entry in islice(entries(DatasetSpec.parse(text)), limit):
        try:
            yield load(entry)
        except InputError as exc:
            problems.append({"name": entry.name, "problem": str(exc)})
            console.print(f"[yellow]skipped[/yellow] {entry.name}: {exc}", highlight=False, soft_wrap=True)


def run_validation(request: ValidateRequest, console: Console) -> bool:
    """Edge-case prompt states on every image; official click loops on the images that come with
    an object mask (the built-in samples, or a --dataset: its masks are the ground truth)."""
    from i2f_deploy.samples import builtin_samples
    from i2f_deploy.validate.loops import check_loop

    artifact_dir, checkpoint, report_path, clicks = request.artifact_dir, request.checkpoint, request.report, request.clicks
    check_output_file(report_path, "--report")
    backends = comma_list(request.backends, "--backends", BACKENDS)
    tolerances = parse_tolerances(request.tolerances)
    if clicks < 1:
        raise I2FError(f"--clicks must be at least 1, got {clicks}")
    chosen = [option for option, given in (("--sample", request.samples is not None), ("--images", request.images),
                                           ("--dataset", request.dataset is not None)) if given]
    if len(chosen) > 1:
        raise I2FError(f"{' and '.join(chosen)} {'both' if len(chosen) == 2 else 'all'} choose the images: give one of them")
    if request.limit is not None and request.dataset is None:
        raise I2FError("--limit counts the images of --dataset: give --dataset, or choose images with --sample or --images")
    if request.limit is not None and request.limit < 1:
        raise I2FError(f"--limit must be at least 1, got {request.limit}")
    if request.dataset is not None:
        DatasetSpec.parse(request.dataset)  # a bad path refused before the model loads
    manifest = runtime.read_manifest(artifact_dir)
    model = reference_model(artifact_dir, manifest, checkpoint)
    validation = Validation(artifact_dir, model, manifest, backends, tolerances)
    rng = random.Random(request.seed) if request.seed is not None else None
    problems: list[dict] = []
    images: Iterable[tuple[str, np.ndarray, np.ndarray | None]]
    if request.images:
        images = [(path.name, read_image_rgb(path), None) for path in request.images]
    elif request.dataset is not None:
        samples = _dataset_samples(request.dataset, request.limit, console, problems)
        images = ((sample.name, sample.image, sample.mask) for sample in samples)
    else:
        images = ((sample.name, sample.image, sample.mask) for sample in builtin_samples(request.samples))
    bf16_decoder = runtime.load(artifact_dir, "decoder", "openvino", precision="bf16", verify=False) if "openvino" in backends else None
    bf16_rows = []
    for name, image, mask in images:  # one image in memory at a time (a dataset may be large)
        console.log(f"edge cases on {name}")
        features = validation.run_image(name, image)
        if bf16_decoder is not None:
            bf16_rows += bf16_report(validation, bf16_decoder, name, features)
        for case in edge_case_states(validation.size):  # judged: not kept for the next images
            del validation.reference_logits[(name, case)]
        if mask is not None:
            console.log(f"{clicks}-click loop on {name}")
            validation.loops += check_loop(validation, name, image, mask, clicks, rng)
    extra = {
        "loops": [loop.to_dict() for loop in validation.loops],
        **({"openvino_bf16": bf16_rows} if "openvino" in backends else {}),
        **({"dataset": request.dataset, "dataset_problems": problems} if request.dataset is not None else {}),
    }
    print_table(validation, console)
    if report_path is not None:
        write_json(report_path, to_json(validation, extra))
        console.print(f"wrote the report to {report_path}", highlight=False, soft_wrap=True)
    return validation.passed
