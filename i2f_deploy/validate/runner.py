"""``i2f-deploy validate``: do the exported graphs compute what the PyTorch model computes?

The reference is the project's PyTorch model with the same weights (the checkpoint, or the seed
recorded for random weights). Encoders are compared on each image; decoders are fed the
reference encoder's outputs, so a decoder verdict is about the decoder alone, and the end effect
of the encoder is judged separately (decoder on the backend's features vs the reference mask).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from i2f_deploy import runtime
from i2f_deploy.config import config_from_dict
from i2f_deploy.contract import ENCODER_OUTPUTS, part_files, sha256, verify_files
from i2f_deploy.errors import I2FError
from i2f_deploy.export.dlu import EdgeTerms
from i2f_deploy.model.inter2former import Inter2Former, build_model, random_model
from i2f_deploy.preprocess import preprocess
from i2f_deploy.validate.compare import Comparison, Tolerance, compare, mask_iou
from i2f_deploy.validate.decisions import DEFAULT_EPSILON, Decision, dlu_box_decision, exact_decision
from i2f_deploy.validate.states import edge_case_states

DEFAULT_TOLERANCES = {
    "image_embeddings": Tolerance(atol=1e-3),
    "logits": Tolerance(atol=1e-3),
    # The reference computes the edge maps with the encoder graph's portable numerics, so they
    # agree to ~1e-5; a Canny decision (NMS, threshold, orientation) that still flips moves its
    # neighbourhood, hence a tolerated share (measured: <= 1.3 % on the built-in samples).
    "edge_maps": Tolerance(atol=1e-3, max_mismatch=0.03),
    # ... and their end effect: the decoder on the backend's features vs the reference masks
    # (measured: >= 0.9994 on the built-in samples, both backends).
    "edge_maps_mask_iou": Tolerance(atol=0.999),
}


@dataclass
class CaseReport:
    backend: str
    part: str
    case: str
    outputs: dict[str, Comparison] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    judged: bool = True
    failures: list[str] = field(default_factory=list)

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
        }


def reference_model(artifact_dir: Path, manifest: dict, checkpoint: Path | None) -> Inter2Former:
    """The PyTorch model the artifacts were exported from, with the edge-detector arithmetic the
    encoder graph implements; refuses a checkpoint that differs."""
    model = _reference_weights(artifact_dir, manifest, checkpoint)
    model.edge_detector.use_numerics(manifest.get("edge_numerics", "official"))
    return model


def check_weights(artifact_dir: Path, manifest: dict, checkpoint: Path | None) -> None:
    """Refuse, before any work, a checkpoint that is not the one the export was made from (or a
    missing one for a checkpoint export, or one given for a random-weights export)."""
    weights = manifest.get("weights", {})
    if checkpoint is None:
        if weights.get("source") != "random":
            raise I2FError(f"{artifact_dir} was exported from a checkpoint: pass --checkpoint")
        return
    if weights.get("source") == "random":
        raise I2FError(f"{artifact_dir} was exported with random weights (seed {weights.get('seed', 0)}), "
                       f"not from {checkpoint}: drop --checkpoint")
    if not Path(checkpoint).is_file():
        raise I2FError(f"checkpoint not found: {checkpoint}")
    expected = weights.get("sha256")
    if expected and sha256(Path(checkpoint)) != expected:
        raise I2FError(f"checkpoint {checkpoint} is not the one {artifact_dir} was exported from (sha256 differs)")


def _reference_weights(artifact_dir: Path, manifest: dict, checkpoint: Path | None) -> Inter2Former:
    check_weights(artifact_dir, manifest, checkpoint)
    config = config_from_dict(manifest["config"])
    routing = manifest.get("routing", "dynamic")
    if checkpoint is None:
        return random_model(config, int(manifest["weights"].get("seed", 0)), routing)
    return build_model(config, checkpoint, routing=routing)


def check_contract(runner: runtime.GraphRunner, io: dict, backend: str, part: str) -> list[str]:
    problems = []
    for kind, names in (("inputs", runner.input_names), ("outputs", runner.output_names)):
        expected = list(io[kind])
        if sorted(names) != sorted(expected):
            problems.append(f"{backend} {part} {kind} {sorted(names)} != manifest {sorted(expected)}")
    return problems


def check_shapes(outputs: dict[str, np.ndarray], io: dict) -> list[str]:
    problems = []
    for name, spec in io["outputs"].items():
        value = outputs.get(name)
        if value is None:
            problems.append(f"output {name} missing")
        elif str(value.dtype) != spec["dtype"]:
            problems.append(f"output {name} dtype {value.dtype} != {spec['dtype']}")
        elif name in ("logits", *ENCODER_OUTPUTS) and list(value.shape) != spec["shape"]:
            problems.append(f"output {name} shape {list(value.shape)} != {spec['shape']}")
    return problems


class Validation:
    def __init__(self, artifact_dir: Path, model: Inter2Former, manifest: dict, backends: list[str],
                 tolerances: dict[str, Tolerance], epsilon: float = DEFAULT_EPSILON) -> None:
        self.artifact_dir = artifact_dir
        self.model = model
        self.io = manifest["io"]
        self.size = int(manifest["target_size"])
        self.threshold = model.config.model.decode_head.threshold
        self.tolerances = tolerances
        self.epsilon = epsilon
        self.backends = backends
        # every graph file checked once against the manifest; the loads below skip it
        verify_files(artifact_dir, manifest, part_files(manifest, "encoder") + part_files(manifest, "decoder"))
        self.runners = {
            backend: {part: runtime.load(artifact_dir, part, backend, verify=False) for part in ("encoder", "decoder")}
            for backend in backends
        }
        self.edge_terms = EdgeTerms(model.decode_head)
        self.reports: list[CaseReport] = []
        self.reference_logits: dict[tuple[str, str], np.ndarray] = {}  # (image, state) -> logits
        self.loops: list = []  # LoopReport per backend and sample
        self.contract_problems = [
            problem
            for backend, parts in self.runners.items()
            for part, runner in parts.items()
            for problem in check_contract(runner, self.io[part], backend, part)
        ]

    def reference_features(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """The encoder's outputs by PyTorch: the official five and each DLU stage's edge term."""
        embeddings, edge_maps = self.model.encode(torch.from_numpy(image))
        with torch.no_grad():
            edge_convs = self.edge_terms(edge_maps)
        return dict(zip(ENCODER_OUTPUTS, (t.numpy() for t in (embeddings, *edge_maps, *edge_convs))))

    def reference_decode(self, features: dict[str, np.ndarray], ref_label: np.ndarray):
        edge_maps = [torch.from_numpy(features[f"edge_map_{i}"]) for i in range(4)]
        return self.model.decode_detailed(torch.from_numpy(features["image_embeddings"]), edge_maps, torch.from_numpy(ref_label))

    def check_decoder(self, backend: str, case: str, features: dict[str, np.ndarray], ref_label: np.ndarray, reference) -> CaseReport:
        report = CaseReport(backend, "decoder", case)
        out = self.runners[backend]["decoder"].run({**features, "ref_label": ref_label})
        report.failures += check_shapes(out, self.io["decoder"])
        report.decisions.append(exact_decision("num_routed", np.array([reference.routed_tokens.numel()]), out["num_routed"]))
        report.decisions.append(exact_decision("dpe_box", reference.routing.box_values.numpy(), out["dpe_box"]))
        dlu = dlu_box_decision(reference.dlu_box.as_tensor().numpy(), out["dlu_box"], reference.coarse_logits.numpy(), self.threshold, self.epsilon)
        report.decisions.append(dlu)
        report.failures += [f"{d.name}: reference {d.reference} vs {d.candidate}" + (f" (margin {d.margin:.2e})" if d.margin is not None else "") for d in report.decisions if d.verdict == "fail"]
        logits = compare(out["logits"], reference.logits.numpy(), self.tolerances["logits"], logits=True)
        report.outputs["logits"] = logits
        report.judged = dlu.verdict == "agree"
        if report.judged and not logits.passed:
            report.failures.append(f"logits: {logits.problem} (max abs {logits.max_abs:.2e}, IoU {logits.iou:.4f})")
        return report

    def check_encoder(self, backend: str, name: str, image: np.ndarray, reference: dict[str, np.ndarray]) -> CaseReport:
        """Embeddings against the reference; edge maps by their end effect on the edge-case masks."""
        report = CaseReport(backend, "encoder", name)
        out = self.runners[backend]["encoder"].run({"image": image})
        report.failures += check_shapes(out, self.io["encoder"])
        embeddings = compare(out["image_embeddings"], reference["image_embeddings"], self.tolerances["image_embeddings"])
        report.outputs["image_embeddings"] = embeddings
        if not embeddings.passed:
            report.failures.append(f"image_embeddings: {embeddings.problem} (max abs {embeddings.max_abs:.2e})")
        for key in ENCODER_OUTPUTS[1:]:  # edge maps and their terms: by share, then by end effect
            report.outputs[key] = compare(out[key], reference[key], self.tolerances["edge_maps"])
            if not report.outputs[key].passed:
                report.failures.append(f"{key}: {report.outputs[key].problem} (max abs {report.outputs[key].max_abs:.2e})")
        bar = self.tolerances["edge_maps_mask_iou"].atol
        for case, ref_label in edge_case_states(self.size).items():
            candidate = self.runners[backend]["decoder"].run({**out, "ref_label": ref_label})["logits"]
            iou = mask_iou(candidate, self.reference_logits[(name, case)])
            if iou < bar:
                report.failures.append(f"encoder end effect on {case}: mask IoU {iou:.4f} < {bar}")
        return report

    def run_image(self, name: str, image_rgb: np.ndarray) -> dict[str, np.ndarray]:
        """Check every backend on one image; returns the reference features."""
        image, _ = preprocess(image_rgb, self.size)
        features = self.reference_features(image)
        decoded = {case: self.reference_decode(features, m) for case, m in edge_case_states(self.size).items()}
        self.reference_logits.update({(name, case): r.logits.numpy() for case, r in decoded.items()})
        for backend in self.backends:
            self.reports.append(self.check_encoder(backend, name, image, features))
            for case, ref_label in edge_case_states(self.size).items():
                self.reports.append(self.check_decoder(backend, f"{name}/{case}", features, ref_label, decoded[case]))
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
