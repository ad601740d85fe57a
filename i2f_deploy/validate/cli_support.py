"""Argument handling of ``i2f-deploy validate``: images, tolerances, bf16 report."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
import random
from pathlib import Path

import numpy as np
from rich.console import Console

from i2f_deploy import runtime
from i2f_deploy.contract import LOGITS, REF_LABEL
from i2f_deploy.errors import I2FError
from i2f_deploy.options import comma_list
from i2f_deploy.preprocess import read_image_rgb
from i2f_deploy.outputs import check_output_file
from i2f_deploy.runtime import BACKENDS
from i2f_deploy.compare import logits_iou
from i2f_deploy.validate.report import print_table, to_json, write_json
from i2f_deploy.reference import reference_model
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


def bf16_report(validation: Validation, features: dict[str, dict[str, np.ndarray]]) -> list[dict]:
    """What OpenVINO's reduced default precision costs on the decoder, reported and never judged."""
    decoder = runtime.load(validation.artifact_dir, "decoder", "openvino", precision="bf16", verify=False)
    rows = []
    for name, image_features in features.items():
        for case, ref_label in edge_case_states(validation.size).items():
            reference = validation.reference_logits[(name, case)]
            logits = decoder.run({**image_features, REF_LABEL: ref_label})[LOGITS]
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


def run_validation(request: ValidateRequest, console: Console) -> bool:
    """Edge-case prompt states on every image; official click loops on the built-in samples
    (their masks are the ground truth), unless images are given."""
    from i2f_deploy.validate.loops import check_loop
    from i2f_deploy.samples import builtin_samples

    artifact_dir, checkpoint, report_path, clicks = request.artifact_dir, request.checkpoint, request.report, request.clicks
    check_output_file(report_path, "--report")
    backends = comma_list(request.backends, "--backends", BACKENDS)
    tolerances = parse_tolerances(request.tolerances)
    if clicks < 1:
        raise I2FError(f"--clicks must be at least 1, got {clicks}")
    if request.images and request.samples is not None:
        raise I2FError("--sample and --images both choose the images: give one of them")
    manifest = runtime.read_manifest(artifact_dir)
    model = reference_model(artifact_dir, manifest, checkpoint)
    loop_samples = [] if request.images else builtin_samples(request.samples)
    images = [(path.name, read_image_rgb(path)) for path in request.images] or [(sample.name, sample.image) for sample in loop_samples]
    validation = Validation(artifact_dir, model, manifest, backends, tolerances)
    rng = random.Random(request.seed) if request.seed is not None else None
    features = {}
    for name, image in images:
        console.log(f"edge cases on {name}")
        features[name] = validation.run_image(name, image)
    for sample in loop_samples:
        console.log(f"{clicks}-click loop on {sample.name}")
        validation.loops += check_loop(validation, sample.name, sample.image, sample.mask, clicks, rng)
    extra = {
        "loops": [loop.to_dict() for loop in validation.loops],
        **({"openvino_bf16": bf16_report(validation, features)} if "openvino" in backends else {}),
    }
    print_table(validation, console)
    if report_path is not None:
        write_json(report_path, to_json(validation, extra))
        console.print(f"wrote the report to {report_path}", highlight=False, soft_wrap=True)
    return validation.passed
