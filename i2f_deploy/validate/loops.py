"""Interactive loops for ``validate``: the PyTorch model drives the official click protocol;
every backend decodes the same prompt maps from its own encoder features and must agree mask by
mask and in NoC."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

import numpy as np
import torch

from i2f_deploy.compare import mask_iou
from i2f_deploy.contract import IMAGE, LOGITS, NUM_ROUTED, REF_LABEL
from i2f_deploy.preprocess import Geometry, logits_to_image, preprocess
from i2f_deploy.validate.clicks import click_loop, noc
from i2f_deploy.validate.steps import LoopSteps


@dataclass
class LoopReport:
    backend: str
    sample: str
    clicks: int
    min_iou_vs_reference: float
    mean_iou_vs_reference: float
    reference_noc: dict[str, int]
    backend_noc: dict[str, int]
    failures: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


class ReferenceLoop(LoopSteps):
    """The official loop (``validate.steps``) run with the PyTorch model; remembers the prompt
    map the decoder read at every iteration."""

    def __init__(self, validation, image_rgb: np.ndarray) -> None:
        self.validation = validation
        self.image, geometry = preprocess(image_rgb, validation.size)
        self.features = validation.reference_features(self.image)
        super().__init__(self._decode_reference, geometry)

    def _decode_reference(self, prompt_map: np.ndarray) -> dict[str, np.ndarray]:
        result = self.validation.reference_decode(self.features, prompt_map).result
        return {LOGITS: result.logits.numpy(), NUM_ROUTED: np.asarray(result.routed_tokens.numel())}


def path_masks(validation, path: str, image: np.ndarray, geometry: Geometry, prompt_maps: list[np.ndarray]) -> list[np.ndarray]:
    """The masks of decoder ``path`` on its backend's own encoder features."""
    features = validation.encoders[validation.backend_of[path]].run({IMAGE: image})
    decoder = validation.decoders[path]
    return [logits_to_image(decoder.run({**features, REF_LABEL: m})[LOGITS], geometry) > 0 for m in prompt_maps]


def check_loop(validation, name: str, image_rgb: np.ndarray, ground_truth: np.ndarray, num_clicks: int,
               rng: random.Random | None = None) -> list[LoopReport]:
    reference = ReferenceLoop(validation, image_rgb)
    with torch.no_grad():
        run = click_loop(reference.step, ground_truth, num_clicks, rng)
    reference_noc = {str(k): v for k, v in run.noc().items()}
    reports = []
    for backend in validation.decoders:  # every decoder path
        masks = path_masks(validation, backend, reference.image, reference.geometry, reference.prompt_maps)
        agreement = [mask_iou(a, b) for a, b in zip(masks, run.predictions)]
        backend_noc = {str(k): v for k, v in noc([mask_iou(m, ground_truth) for m in masks], max_clicks=num_clicks).items()}
        judge = _reduced_failures if validation.reduced(backend) else _f32_failures
        failures = judge(validation.tolerances, agreement, reference_noc, backend_noc)
        reports.append(LoopReport(backend, name, len(run.clicks), min(agreement), float(np.mean(agreement)),
                                  reference_noc, backend_noc, failures))
    return reports


def _f32_failures(tolerances, agreement: list[float], reference_noc: dict[str, int], backend_noc: dict[str, int]) -> list[str]:
    """f32 graphs: every click's mask as the reference's, and the same NoC."""
    bar = tolerances.edge_maps_mask_iou
    failures = [f"click {i + 1}: mask IoU vs reference {v:.4f} < {bar}" for i, v in enumerate(agreement) if v < bar]
    if backend_noc != reference_noc:
        failures.append(f"NoC {backend_noc} != reference {reference_noc}")
    return failures


def _reduced_failures(tolerances, agreement: list[float], reference_noc: dict[str, int], backend_noc: dict[str, int]) -> list[str]:
    """A reduced-precision encoder: the loop's mean mask IoU and NoC within the reduced gate."""
    failures = []
    mean = float(np.mean(agreement))
    if mean < tolerances.reduced_mask_iou:
        failures.append(f"mean mask IoU vs reference over the loop {mean:.4f} < {tolerances.reduced_mask_iou}")
    worst = max(abs(backend_noc[k] - reference_noc[k]) for k in reference_noc)
    if worst > tolerances.reduced_noc_clicks:
        failures.append(f"NoC {backend_noc} differs from reference {reference_noc} by {worst} > {tolerances.reduced_noc_clicks:g} click(s)")
    return failures
