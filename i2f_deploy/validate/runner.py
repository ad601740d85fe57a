"""``i2f-deploy validate``: do the exported graphs compute what the PyTorch model computes?

The reference is the project's PyTorch model with the same weights (the checkpoint, or the seed
recorded for random weights). Encoders are compared on each image; decoders are fed the
reference encoder's outputs, so a decoder verdict is about the decoder alone, and the end effect
of the encoder is judged separately (decoder on the backend's features vs the reference mask).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from i2f_deploy import runtime
from i2f_deploy.compare import Comparison, Tolerance, compare, logits_iou
from i2f_deploy.contract import (
    DLU_BOX,
    DPE_BOX,
    EDGE_MAPS,
    ENCODER_OUTPUTS,
    IMAGE,
    IMAGE_EMBEDDINGS,
    LOGITS,
    NUM_ROUTED,
    REF_LABEL,
    GraphIO,
    Manifest,
)
from i2f_deploy.export.dlu import EdgeTerms
from i2f_deploy.model.inter2former import DecodeResult, Inter2Former
from i2f_deploy.model.moe import HybridMoE
from i2f_deploy.preprocess import preprocess
from i2f_deploy.validate.decisions import DEFAULT_EPSILON, Decision, dlu_box_decision, exact_decision, expert_choice_decision
from i2f_deploy.validate.states import edge_case_states


@dataclass(frozen=True)
class ReferenceDecode:
    """The PyTorch decoder's result and the smallest top-two gap of its experts' scores."""

    result: DecodeResult
    expert_margin: float  # inf when no token was routed (or a single expert)


@contextmanager
def expert_margins(model: torch.nn.Module) -> Iterator[list[float]]:
    """Within the block, the smallest gap between a routed token's two highest expert scores
    (gate plus bias, what the argmax decides on) of every HybridMoE call, in call order."""
    margins: list[float] = []

    def record(module: HybridMoE, args: tuple[torch.Tensor, torch.Tensor]) -> None:
        tokens, routed = args
        if routed.numel() and module.num_experts > 1:
            scores = module.expert_gate(tokens[routed]) + module.exp_bias
            top = scores.topk(2, dim=-1).values
            margins.append(float((top[:, 0] - top[:, 1]).min()))

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, HybridMoE)]
    try:
        yield margins
    finally:
        for hook in hooks:
            hook.remove()


@dataclass(frozen=True)
class Tolerances:
    """What validate tolerates; ``--tolerance NAME=VALUE`` overrides one (an ``atol``, or the
    IoU floor)."""

    image_embeddings: Tolerance = Tolerance(atol=1e-3)
    logits: Tolerance = Tolerance(atol=1e-3)
    # The reference computes the edge maps with the encoder graph's portable numerics, so they
    # agree to ~1e-5; a Canny decision (NMS, threshold, orientation) that still flips moves its
    # neighbourhood, hence a tolerated share (measured: <= 1.3 % on the built-in samples).
    edge_maps: Tolerance = Tolerance(atol=1e-3, max_mismatch=0.03)
    # ... and their end effect, a floor: the decoder on the backend's features vs the reference
    # masks (measured: >= 0.9994 on the built-in samples, both backends).
    edge_maps_mask_iou: float = 0.999
    # A reduced-precision encoder (export --precision bf16 or int8) is judged by its end effect
    # only, against the f32 reference: the mask of every prompt state, and over each click loop
    # the mean mask IoU and the NoC (clicks to reach 85/90 % IoU), which may differ by this many.
    reduced_mask_iou: float = 0.99
    reduced_noc_clicks: float = 1

    def overridden(self, name: str, value: float) -> Tolerances:
        current = getattr(self, name)
        new: Any = replace(current, atol=value) if isinstance(current, Tolerance) else value
        return replace(self, **{name: new})


@dataclass
class CaseReport:
    backend: str
    part: str
    case: str
    outputs: dict[str, Comparison] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    judged: bool = True
    failures: list[str] = field(default_factory=list)
    end_effect: dict[str, float] = field(default_factory=dict)  # encoder: mask IoU per prompt state

    @property
    def verdict(self) -> str:
        if self.failures:
            return "fail"
        return "flip" if any(d.verdict == "flip" for d in self.decisions) else "pass"

    def to_dict(self) -> dict:
        return {
            "backend": self.backend,
            "part": self.part,
            "case": self.case,
            "verdict": self.verdict,
            "judged": self.judged,
            "outputs": {name: c.to_dict() for name, c in self.outputs.items()},
            "decisions": [d.to_dict() for d in self.decisions],
            "failures": self.failures,
            "end_effect_mask_iou": self.end_effect,
        }


def check_contract(runner: runtime.GraphRunner, io: GraphIO, backend: str, part: str) -> list[str]:
    problems = []
    for kind, names, specs in (("inputs", runner.input_names, io.inputs), ("outputs", runner.output_names, io.outputs)):
        expected = list(specs)
        if sorted(names) != sorted(expected):
            problems.append(f"{backend} {part} {kind} {sorted(names)} != manifest {sorted(expected)}")
    return problems


def check_shapes(outputs: dict[str, np.ndarray], io: GraphIO) -> list[str]:
    problems = []
    for name, spec in io.outputs.items():
        value = outputs.get(name)
        if value is None:
            problems.append(f"output {name} missing")
        elif str(value.dtype) != spec.dtype:
            problems.append(f"output {name} dtype {value.dtype} != {spec.dtype}")
        elif name in (LOGITS, *ENCODER_OUTPUTS) and list(value.shape) != spec.shape:
            problems.append(f"output {name} shape {list(value.shape)} != {spec.shape}")
    return problems


class Validation:
    def __init__(self, artifact_dir: Path, model: Inter2Former, manifest: Manifest, backends: list[str],
                 tolerances: Tolerances, epsilon: float = DEFAULT_EPSILON) -> None:
        self.artifact_dir = artifact_dir
        self.model = model
        self.io = manifest.io
        self.size = manifest.target_size
        self.threshold = model.config.model.decode_head.threshold
        self.tolerances = tolerances
        self.epsilon = epsilon
        self.backends = backends
        self.encoder_precision = {backend: manifest.precision.encoder.on(backend) for backend in backends}
        # every graph file checked once against the manifest; the loads below skip it
        manifest.verify(artifact_dir)
        self.encoders = {backend: runtime.load(artifact_dir, "encoder", backend, verify=False) for backend in backends}
        # per decoder path, labelled: each backend as its runtime picks it, and where that is the
        # native kernels, also the function bodies (``<backend>-function-body``: decoder.onnx as a
        # stock runtime runs it), on the same cases and loops
        self.decoders: dict[str, runtime.GraphRunner] = {}
        self.backend_of: dict[str, str] = {}
        for backend in backends:
            decoder = runtime.load(artifact_dir, "decoder", backend, verify=False)
            paths = [(backend, decoder)]
            if decoder.kernels == "native":
                paths.append((f"{backend}-function-body",
                              runtime.load(artifact_dir, "decoder", backend, kernels="function-body", verify=False)))
            for label, runner in paths:
                self.decoders[label] = runner
                self.backend_of[label] = backend
        # how each path runs the custom ops: "native" or "function-body"
        self.kernels = {label: decoder.kernels for label, decoder in self.decoders.items()}
        self.edge_terms = EdgeTerms(model.decode_head)
        self.reports: list[CaseReport] = []
        self.reference_logits: dict[tuple[str, str], np.ndarray] = {}  # (image, state) -> logits
        self.loops: list = []  # LoopReport per backend and sample
        self.contract_problems = [
            problem
            for label, part, runner in [*((b, "encoder", r) for b, r in self.encoders.items()),
                                        *((label, "decoder", r) for label, r in self.decoders.items())]
            for problem in check_contract(runner, self.io[part], label, part)
        ]

    def reference_features(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """The encoder's outputs by PyTorch: the official five and each DLU stage's edge term."""
        embeddings, edge_maps = self.model.encode(torch.from_numpy(image))
        with torch.no_grad():
            edge_convs = self.edge_terms(edge_maps)
        return dict(zip(ENCODER_OUTPUTS, (t.numpy() for t in (embeddings, *edge_maps, *edge_convs))))

    def reference_decode(self, features: dict[str, np.ndarray], ref_label: np.ndarray) -> ReferenceDecode:
        edge_maps = [torch.from_numpy(features[name]) for name in EDGE_MAPS]
        with expert_margins(self.model) as margins, torch.no_grad():
            result = self.model.decode_detailed(torch.from_numpy(features[IMAGE_EMBEDDINGS]), edge_maps, torch.from_numpy(ref_label))
        return ReferenceDecode(result, min(margins, default=float("inf")))

    def check_decoder(self, path: str, case: str, features: dict[str, np.ndarray], ref_label: np.ndarray,
                      decoded: ReferenceDecode) -> CaseReport:
        """The decoder ``path`` (a label of ``decoders``) on one prompt state."""
        reference = decoded.result
        report = CaseReport(path, "decoder", case)
        out = self.decoders[path].run({**features, REF_LABEL: ref_label})
        report.failures += check_shapes(out, self.io["decoder"])
        report.decisions.append(exact_decision(NUM_ROUTED, np.array([reference.routed_tokens.numel()]), out[NUM_ROUTED]))
        report.decisions.append(exact_decision(DPE_BOX, reference.routing.box_values.numpy(), out[DPE_BOX]))
        dlu = dlu_box_decision(reference.dlu_box.as_tensor().numpy(), out[DLU_BOX], reference.coarse_logits.numpy(),
                               self.threshold, self.epsilon)
        report.decisions.append(dlu)
        report.failures += [f"{d.name}: reference {d.reference} vs {d.candidate}"
                            + (f" (margin {d.margin:.2e})" if d.margin is not None else "")
                            for d in report.decisions if d.verdict == "fail"]
        logits = compare(out[LOGITS], reference.logits.numpy(), self.tolerances.logits, logits=True)
        report.outputs[LOGITS] = logits
        expert = expert_choice_decision(decoded.expert_margin, logits.passed)
        report.decisions.append(expert)
        report.judged = dlu.verdict == "agree" and expert.verdict == "agree"
        if report.judged and not logits.passed:
            report.failures.append(f"logits: {logits.problem} (max abs {logits.max_abs:.2e}, IoU {logits.iou:.4f})")
        return report

    def reduced(self, path: str) -> bool:
        """Does the backend of ``path`` run a reduced-precision encoder (judged by its end effect only)?"""
        return self.encoder_precision[self.backend_of.get(path, path)] != "f32"

    def mask_bar(self, backend: str) -> float:
        return self.tolerances.reduced_mask_iou if self.reduced(backend) else self.tolerances.edge_maps_mask_iou

    def check_encoder(self, backend: str, name: str, image: np.ndarray, reference: dict[str, np.ndarray]) -> CaseReport:
        """Embeddings against the reference; edge maps by their end effect on the edge-case masks.
        A reduced-precision encoder's outputs are reported, and only their end effect judged."""
        report = CaseReport(backend, "encoder", name)
        out = self.encoders[backend].run({IMAGE: image})
        report.failures += check_shapes(out, self.io["encoder"])
        judged = not self.reduced(backend)
        embeddings = compare(out[IMAGE_EMBEDDINGS], reference[IMAGE_EMBEDDINGS], self.tolerances.image_embeddings)
        report.outputs[IMAGE_EMBEDDINGS] = embeddings
        if judged and not embeddings.passed:
            report.failures.append(f"image_embeddings: {embeddings.problem} (max abs {embeddings.max_abs:.2e})")
        for key in ENCODER_OUTPUTS[1:]:  # edge maps and their terms: by share, then by end effect
            report.outputs[key] = compare(out[key], reference[key], self.tolerances.edge_maps)
            if judged and not report.outputs[key].passed:
                report.failures.append(f"{key}: {report.outputs[key].problem} (max abs {report.outputs[key].max_abs:.2e})")
        bar = self.mask_bar(backend)
        for case, ref_label in edge_case_states(self.size).items():
            candidate = self.decoders[backend].run({**out, REF_LABEL: ref_label})[LOGITS]
            iou = logits_iou(candidate, self.reference_logits[(name, case)])
            report.end_effect[case] = iou
            if iou < bar:
                report.failures.append(f"encoder end effect on {case}: mask IoU {iou:.4f} < {bar}")
        return report

    def run_image(self, name: str, image_rgb: np.ndarray) -> dict[str, np.ndarray]:
        """Check every backend on one image; returns the reference features."""
        image, _ = preprocess(image_rgb, self.size)
        features = self.reference_features(image)
        decoded = {case: self.reference_decode(features, m) for case, m in edge_case_states(self.size).items()}
        self.reference_logits.update({(name, case): r.result.logits.numpy() for case, r in decoded.items()})
        for backend in self.backends:
            self.reports.append(self.check_encoder(backend, name, image, features))
        for path in self.decoders:
            for case, ref_label in edge_case_states(self.size).items():
                self.reports.append(self.check_decoder(path, f"{name}/{case}", features, ref_label, decoded[case]))
        return features

    @property
    def failures(self) -> list[str]:
        found = list(self.contract_problems)
        for report in self.reports:
            found += [f"{report.backend} {report.part} {report.case}: {f}" for f in report.failures]
        for loop in self.loops:
            found += [f"{loop.backend} loop {loop.sample}: {f}" for f in loop.failures]
        return found

    @property
    def passed(self) -> bool:
        return not self.failures
