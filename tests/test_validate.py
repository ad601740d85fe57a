"""``i2f-deploy validate``: passes a faithful export, fails a perturbed one and names the output,
tells a near-threshold flip from a defect, and refuses bad input with exit 2."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from support.native import require_native
from typer.testing import CliRunner

from i2f_deploy.cli import app
from i2f_deploy.validate.decisions import EXPERT_EPSILON, dlu_box_decision, expert_choice_decision

pytestmark = pytest.mark.graph

THRESHOLD = -2.0


def validate(*args: str):
    return CliRunner().invoke(app, ["validate", *args])


def test_faithful_export_passes_on_both_backends(tiny_artifacts, tiny_checkpoint, golden_image_path, tmp_path):
    require_native()  # both decoders validated on the native kernels, and on their function bodies
    report = tmp_path / "report.json"
    result = validate(str(tiny_artifacts), "--checkpoint", str(tiny_checkpoint), "--images", str(golden_image_path),
                      "--report", str(report))
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["passed"] and data["backends"] == ["onnxruntime", "openvino"]
    assert data["kernels"] == {"onnxruntime": "native", "openvino": "native",
                               "onnxruntime-function-body": "function-body", "openvino-function-body": "function-body"}
    assert {case["backend"] for case in data["cases"] if case["part"] == "encoder"} == {"onnxruntime", "openvino"}
    assert {case["backend"] for case in data["cases"] if case["part"] == "decoder"} == set(data["kernels"])
    assert {case["case"].split("/")[-1] for case in data["cases"] if case["part"] == "decoder"} >= {
        "zero-routed", "all-routed", "tiny-object-at-corner", "object-touching-border", "click-on-border-pixel"
    }
    assert data["openvino_bf16"], "the reduced-precision report is written"
    gates = [line for line in result.output.splitlines() if line.startswith("gate: ")]
    assert len(gates) == 2 and all(line.endswith("no click loops (they need an object mask: the built-in samples "
                                                 "have one, --images do not)") for line in gates), gates
    assert "NoC" not in " ".join(gates)  # no loop ran, so none is promised
    assert f"wrote the report to {report}" in result.output.replace("\n", "")


def scaled_copy(artifacts, tmp_path, part: str, initializer_hint: str, factor: float, segments: bool = True):
    """An unfaithful export: one weight scaled, the manifest describing the file as written (so the
    integrity check passes and validate's numerical checks must catch it). ``segments``: in the
    decoder's segments too."""
    from i2f_deploy.contract import sha256

    copy = tmp_path / f"perturbed-{part}"
    shutil.copytree(artifacts, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    name = next(t.name for t in onnx.load(str(copy / f"{part}.onnx")).graph.initializer if initializer_hint in t.name)
    # that weight in the part's graph and, for the decoder, in the segment ONNX Runtime's native path runs
    for graph in [copy / f"{part}.onnx", *(sorted((copy / f"{part}_segments").glob("*.onnx")) if segments else [])]:
        model = onnx.load(str(graph))
        target = next((t for t in model.graph.initializer if t.name == name), None)
        if target is None:
            continue
        target.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(target) * np.float32(factor), target.name))
        onnx.save(model, str(graph))
        manifest["checksums"][graph.relative_to(copy).as_posix()] = sha256(graph)
        manifest["sizes"][graph.relative_to(copy).as_posix()] = graph.stat().st_size
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy, name


@pytest.mark.parametrize(
    ("part", "hint", "named"),
    [
        ("decoder", "o_proj.weight", "logits"),
        ("encoder", "backbone.blocks.0.norm2.weight", "image_embeddings"),
        ("encoder", "edge_detector.block_list.1.0.conv2.weight", "edge_map_1"),
    ],
)
def test_perturbed_weight_fails_and_names_the_output(tiny_artifacts, tiny_checkpoint, golden_image_path, tmp_path, part, hint, named):
    perturbed, _ = scaled_copy(tiny_artifacts, tmp_path, part, hint, 1.02)
    result = validate(str(perturbed), "--checkpoint", str(tiny_checkpoint), "--images", str(golden_image_path), "--backends", "onnxruntime")
    assert result.exit_code == 1, result.output
    assert f"{named}:" in result.output


def test_a_defect_in_the_whole_decoder_alone_fails_where_native_kernels_run(tiny_artifacts, tiny_checkpoint,
                                                                           golden_image_path, tmp_path):
    """Where ONNX Runtime runs the native kernels on the segments, decoder.onnx (what a stock
    runtime runs) is still checked: a weight wrong in it alone fails that path and no other."""
    require_native()
    perturbed, _ = scaled_copy(tiny_artifacts, tmp_path, "decoder", "o_proj.weight", 1.02, segments=False)
    result = validate(str(perturbed), "--checkpoint", str(tiny_checkpoint), "--images", str(golden_image_path),
                      "--backends", "onnxruntime")
    assert result.exit_code == 1, result.output
    failing = {line.split()[1] for line in result.output.splitlines() if line.startswith("FAIL ") and "logits:" in line}
    assert failing == {"onnxruntime-function-body"}, result.output


def test_near_threshold_disagreement_is_a_flip_and_a_far_one_fails():
    coarse = np.full((1, 1, 8, 8), -5.0, dtype=np.float32)
    coarse[0, 0, 2:4, 2:4] = 1.0
    coarse[0, 0, 5, 6] = THRESHOLD + 4e-4  # just above: the reference box reaches it
    reference_box = [2, 2, 7, 6]
    candidate_box = [2, 2, 4, 4]  # a backend that saw that token just below the threshold
    flip = dlu_box_decision(np.array(reference_box), np.array(candidate_box), coarse, THRESHOLD, epsilon=1e-3)
    assert flip.verdict == "flip" and flip.margin == pytest.approx(4e-4, abs=1e-6)

    coarse[0, 0, 5, 6] = THRESHOLD + 0.5  # clearly above: missing it is a defect
    fail = dlu_box_decision(np.array(reference_box), np.array(candidate_box), coarse, THRESHOLD, epsilon=1e-3)
    assert fail.verdict == "fail" and fail.margin == pytest.approx(0.5, abs=1e-6)

    agree = dlu_box_decision(np.array(reference_box), np.array(reference_box), coarse, THRESHOLD)
    assert agree.verdict == "agree"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent/artifacts"], "no manifest.json"),
        (["{art}", "--checkpoint", "{ckpt}", "--backends", "tensorrt"], "--backends: unknown tensorrt"),
        (["{art}", "--checkpoint", "{ckpt}", "--images", "{bad_image}"], "as an image (unsupported or corrupt file)"),
        (["{art}", "--checkpoint", "{other_ckpt}"], "is not the one"),
        (["{art}"], "pass --checkpoint"),
        (["{art}", "--checkpoint", "{ckpt}", "--images", "{bad_image}", "--sample", "rocket"], "--sample and --images both choose"),
        (["{art}", "--checkpoint", "{ckpt}", "--sample", "rocket,moon"], "unknown sample(s) moon"),
    ],
)
def test_bad_inputs_exit_2(tiny_artifacts, tiny_checkpoint, tmp_path, args, message):
    bad_image = tmp_path / "broken.png"
    bad_image.write_bytes(b"not a png")
    other = tmp_path / "other.pth"
    other.write_bytes(tiny_checkpoint.read_bytes() + b"\0")
    values = {"art": str(tiny_artifacts), "ckpt": str(tiny_checkpoint), "bad_image": str(bad_image), "other_ckpt": str(other)}
    result = validate(*[arg.format(**values) for arg in args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_click_loops_agree_click_by_click_with_identical_noc(tiny_artifacts, tiny_checkpoint, tmp_path):
    report = tmp_path / "loops.json"
    args = [str(tiny_artifacts), "--checkpoint", str(tiny_checkpoint), "--clicks", "4", "--report", str(report),
            "--sample", "coffee-cup,ellipse-333x517"]
    result = validate(*args)
    data = json.loads(report.read_text())
    loops = data["loops"]
    assert {(loop["backend"], loop["sample"]) for loop in loops} == {
        (path, s) for path in data["kernels"] for s in ("coffee-cup", "ellipse-333x517")  # every decoder path
    }
    for loop in loops:
        assert loop["clicks"] == 4 and loop["backend_noc"] == loop["reference_noc"], loop
        assert loop["min_iou_vs_reference"] >= 0.999, loop
    assert result.exit_code == (0 if data["passed"] else 1)
    assert all(line.endswith("NoC equal") for line in result.output.splitlines() if line.startswith("gate: "))


@pytest.mark.slow
def test_base_1024_export_passes_on_both_backends(base_1024_export, tmp_path):
    """Acceptance at base size: a faithful ViT-B export at 1024 (random weights in the official
    layout) passes every check, click loop included, and writes the report."""
    artifacts, checkpoint = base_1024_export
    report = tmp_path / "report.json"
    result = validate(str(artifacts), "--checkpoint", str(checkpoint), "--sample", "coffee-cup", "--clicks", "3",
                      "--report", str(report))
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["passed"] and data["backends"] == ["onnxruntime", "openvino"]
    assert {loop["backend"] for loop in data["loops"]} == {"onnxruntime", "openvino"}
    assert all(loop["backend_noc"] == loop["reference_noc"] for loop in data["loops"])


def test_expert_margins_measure_the_gap_the_argmax_decides_on() -> None:
    """Direct computation: a gate with zero weights scores every expert sigmoid(0) = 0.5, so the
    bias alone separates them; an exact tie has gap 0, and no routed token records nothing."""
    import torch

    from i2f_deploy.model.moe import HybridMoE
    from i2f_deploy.validate.runner import expert_margins

    moe = HybridMoE(dim=8, hidden=32, num_experts=4)
    torch.nn.init.zeros_(moe.expert_gate[0].weight)
    torch.nn.init.zeros_(moe.expert_gate[0].bias)
    tokens = torch.randn(6, 8)
    with expert_margins(moe) as margins, torch.no_grad():
        moe.exp_bias.copy_(torch.tensor([0.0, 0.25, 0.125, 0.25]))  # experts 1 and 3 tie
        moe(tokens, torch.tensor([0, 3, 5]))
        moe.exp_bias.copy_(torch.tensor([0.0, 0.5, 0.125, 0.25]))
        moe(tokens, torch.tensor([2]))
        moe(tokens, torch.tensor([], dtype=torch.int64))
    assert margins == [0.0, 0.25]


@pytest.mark.parametrize(("margin", "logits_passed", "verdict"), [
    (0.0, False, "flip"), (EXPERT_EPSILON, False, "flip"), (0.0, True, "agree"), (1e-3, False, "agree")])
def test_differing_logits_are_an_expert_flip_only_at_a_near_tie(margin, logits_passed, verdict) -> None:
    decision = expert_choice_decision(margin, logits_passed)
    assert (decision.name, decision.verdict, decision.margin) == ("expert_choice", verdict, margin)
