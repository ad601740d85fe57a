"""Exported graphs of the golden tiny checkpoint on ONNX Runtime and OpenVINO."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from i2f_deploy.custom_ops import DOMAIN
from i2f_deploy.custom_ops.registry import OP_TYPES
from support.commands import assert_runs_without_torch
from support.golden import DECODER_CASES
from typer.testing import CliRunner

from i2f_deploy import runtime
from i2f_deploy.cli import app
from i2f_deploy.compare import assert_close, logits_iou

pytestmark = pytest.mark.graph

BACKENDS = ("onnxruntime", "openvino")
KERNEL_PATHS = [("onnxruntime", "function-body"), ("onnxruntime", "native"), ("openvino", "function-body"), ("openvino", "native")]
FEATURES = ("image_embeddings", "edge_map_0", "edge_map_1", "edge_map_2", "edge_map_3")


def test_decoder_holds_one_node_and_one_function_per_custom_op(tiny_artifacts):
    model = onnx.load(str(tiny_artifacts / "decoder.onnx"))
    custom = [node.op_type for node in model.graph.node if node.domain == DOMAIN]
    assert sorted(set(custom)) == sorted(OP_TYPES)
    assert custom.count("TokenRouting") == 1 and custom.count("BSQAttention") == 2 and custom.count("HybridMoE") == 2
    assert custom.count("DLUUpsample") == 4
    assert sorted(f.name for f in model.functions if f.domain == DOMAIN) == sorted(OP_TYPES)
    onnx.checker.check_model(model, full_check=True)
    inlined = onnx.load(str(tiny_artifacts / "decoder_inlined.onnx"))
    assert not inlined.functions and all(node.domain != DOMAIN for node in inlined.graph.node)


def test_stock_onnxruntime_runs_the_decoder_file(tiny_artifacts, golden):
    """With no i2f-deploy code: the edge terms from edge_conv.onnx, then decoder.onnx."""
    edge_conv = ort.InferenceSession(str(tiny_artifacts / "edge_conv.onnx"), providers=["CPUExecutionProvider"])
    session = ort.InferenceSession(str(tiny_artifacts / "decoder.onnx"), providers=["CPUExecutionProvider"])
    feeds = {name: golden[name] for name in FEATURES}
    terms = edge_conv.run(None, {name: feeds[name] for name in FEATURES[1:]})
    feeds.update({output.name: term for output, term in zip(edge_conv.get_outputs(), terms)})
    logits, num_routed, _, _ = session.run(None, {**feeds, "ref_label": golden["state_medium/ref_label"]})
    assert_close(logits, golden["state_medium/logits"], atol=1e-3)
    assert int(num_routed) == len(golden["state_medium/full_attention_tokens"])


@pytest.mark.parametrize("backend,kernels", KERNEL_PATHS)
def test_decoder_reproduces_every_golden_case(tiny_artifacts, golden, tiny_model, golden_encoded, backend, kernels):
    decoder = runtime.load(tiny_artifacts, "decoder", backend, kernels=kernels)
    assert decoder.kernels == kernels
    feeds = {name: golden[name] for name in FEATURES}
    for case in DECODER_CASES:
        out = decoder.run({**feeds, "ref_label": golden[f"{case}/ref_label"]})
        reference = tiny_model.decode_detailed(*golden_encoded, torch.from_numpy(golden[f"{case}/ref_label"]))
        assert_close(out["logits"], golden[f"{case}/logits"], atol=1e-3, what=case)
        assert int(out["num_routed"]) == len(golden[f"{case}/full_attention_tokens"]), case
        np.testing.assert_array_equal(out["dpe_box"], reference.routing.box_values.numpy())
        np.testing.assert_array_equal(out["dlu_box"], golden[f"{case}/dlu_bbox"])


@pytest.mark.parametrize("value", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("backend,kernels", KERNEL_PATHS)
def test_decoder_routing_extremes(tiny_artifacts, golden, tiny_model, golden_encoded, backend, kernels, value):
    decoder = runtime.load(tiny_artifacts, "decoder", backend, kernels=kernels)
    ref_label = np.full((1, 1, 512, 512), value, np.uint8)
    out = decoder.run({**{name: golden[name] for name in FEATURES}, "ref_label": ref_label})
    reference = tiny_model.decode_detailed(*golden_encoded, torch.from_numpy(ref_label))
    assert int(out["num_routed"]) == reference.routed_tokens.numel() == (0 if value == 0 else 1024)
    assert_close(out["logits"], reference.logits.numpy(), atol=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_encoder_matches_golden_within_the_readme_tolerances(tiny_artifacts, golden, backend):
    """Edge maps are chaotic (orientation flips at the atan2 branch cut, see the golden README):
    they are judged by their end effect on masks; the embeddings are tight."""
    encoder = runtime.load(tiny_artifacts, "encoder", backend)
    decoder = runtime.load(tiny_artifacts, "decoder", backend)
    features = encoder.run({"image": golden["input"]})
    assert_close(features["image_embeddings"], golden["image_embeddings"], atol=1e-3)
    for index in range(4):
        assert np.isfinite(features[f"edge_map_{index}"]).all()
    for case in DECODER_CASES:
        logits = decoder.run({**features, "ref_label": golden[f"{case}/ref_label"]})["logits"]
        assert logits_iou(logits, golden[f"{case}/logits"]) >= 0.99, case


@pytest.mark.parametrize("backend", BACKENDS)
def test_encoder_matches_the_portable_pytorch_numerics(tiny_artifacts, golden, portable_model, backend):
    """Against the arithmetic the graph implements (manifest ``edge_numerics``), the edge maps are
    tight and the masks they lead to are the reference's."""
    assert json.loads((tiny_artifacts / "manifest.json").read_text())["edge_numerics"] == "portable"
    encoder = runtime.load(tiny_artifacts, "encoder", backend)
    decoder = runtime.load(tiny_artifacts, "decoder", backend)
    features = encoder.run({"image": golden["input"]})
    embeddings, edge_maps = portable_model.encode(torch.from_numpy(golden["input"]))
    for index, reference in enumerate(edge_maps):
        off = np.abs(features[f"edge_map_{index}"] - reference.numpy()) > 1e-3
        assert off.mean() <= 0.03, f"edge_map_{index}: {off.mean():.2%} off by > 1e-3"
    for case in DECODER_CASES:
        ref_label = torch.from_numpy(golden[f"{case}/ref_label"])
        logits = decoder.run({**features, "ref_label": golden[f"{case}/ref_label"]})["logits"]
        assert logits_iou(logits, portable_model.decode(embeddings, edge_maps, ref_label).numpy()) >= 0.999, case


def test_openvino_ir_runs_without_extensions(tiny_artifacts, golden):
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(str(tiny_artifacts / "openvino" / "decoder.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    feeds = runtime.load(tiny_artifacts, "decoder", "openvino").with_derived({name: golden[name] for name in FEATURES})
    result = compiled({**feeds, "ref_label": golden["state_small/ref_label"]})
    assert_close(result[compiled.output("logits")], golden["state_small/logits"], atol=1e-3)


def test_manifest_describes_the_artifacts(tiny_artifacts, tiny_checkpoint):
    from i2f_deploy.contract import sha256

    manifest = json.loads((tiny_artifacts / "manifest.json").read_text())
    assert manifest["weights"] == {"source": "checkpoint", "file": tiny_checkpoint.name, "sha256": sha256(tiny_checkpoint)}
    assert manifest["target_size"] == 512 and manifest["routing"] == "dynamic"
    assert manifest["custom_ops"] == {"domain": DOMAIN, "version": 5, "op_types": list(OP_TYPES)}
    files = {p.relative_to(tiny_artifacts).as_posix() for p in tiny_artifacts.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["checksums"]) == files
    assert manifest["io"]["decoder"]["inputs"]["ref_label"] == {"dtype": "uint8", "shape": [1, 1, 512, 512]}
    assert all("outputs unchanged" in note for note in manifest["notes"] if "onnxsim" in note)


def test_dense_routing_export_equals_the_dense_pytorch_model(tmp_path, tiny_checkpoint, tiny_config, golden):
    from i2f_deploy.model.inter2former import build_model

    out = tmp_path / "dense"
    args = ["export", "-c", "inter2former-tiny-512", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--routing", "dense"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    dense = build_model(tiny_config, tiny_checkpoint, routing="dense")
    decoder = runtime.load(out, "decoder", "onnxruntime")
    features = {name: golden[name] for name in FEATURES}
    for case in ("state_small", "state_border"):
        ref_label = golden[f"{case}/ref_label"]
        out_graph = decoder.run({**features, "ref_label": ref_label})
        reference = dense.decode_detailed(torch.from_numpy(features["image_embeddings"]),
                                          [torch.from_numpy(features[n]) for n in FEATURES[1:]],
                                          torch.from_numpy(ref_label))
        assert int(out_graph["num_routed"]) == 1024 == reference.routed_tokens.numel()
        assert_close(out_graph["logits"], reference.logits.numpy(), atol=1e-3)


def test_runtime_runs_both_backends_without_importing_torch(tiny_artifacts, golden):
    assert_runs_without_torch(
        "import numpy as np\n"
        "from i2f_deploy import runtime\n"
        f"g = np.load({str(golden_npz_path())!r})\n"
        "for backend in ('onnxruntime', 'openvino'):\n"
        f"    dec = runtime.load({str(tiny_artifacts)!r}, 'decoder', backend)\n"
        "    feeds = {k: g[k] for k in ('image_embeddings', 'edge_map_0', 'edge_map_1', 'edge_map_2', 'edge_map_3')}\n"
        "    out = dec.run({**feeds, 'ref_label': g['state_small/ref_label']})\n"
        "    assert np.abs(out['logits'] - g['state_small/logits']).max() <= 1e-3\n"
    )


def golden_npz_path():
    from support.golden import TINY_DIR

    return TINY_DIR / "golden.npz"


def test_decoder_graph_has_no_resize(tiny_artifacts):
    """The DLU's bicubic x2 is folded into low-resolution filters: no Resize remains (ONNX
    Runtime's cubic Resize once took 94 % of the DLU)."""
    model = onnx.load(str(tiny_artifacts / "decoder.onnx"))
    assert not [node for node in model.graph.node if node.op_type == "Resize"]


def previous_contract_copy(tiny_artifacts, tmp_path):
    """The tiny export with its manifest as contract 1 wrote it (no contract_version)."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(tiny_artifacts, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["contract_version"]
    manifest["manifest_version"] = 1
    (old / "manifest.json").write_text(json.dumps(manifest))
    return old


@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_runtime_refuses_an_artifact_of_the_previous_contract(tiny_artifacts, tmp_path, part):
    from i2f_deploy.errors import I2FError

    old = previous_contract_copy(tiny_artifacts, tmp_path)
    with pytest.raises(I2FError, match=r"contract 1, this i2f-deploy runs contract 2: re-export it with 'i2f-deploy export"):
        runtime.load(old, part)


@pytest.mark.parametrize("command", ["predict", "bench", "validate"])
def test_commands_refuse_an_artifact_of_the_previous_contract_in_one_line(tiny_artifacts, tmp_path, golden_image_path, command):
    old = previous_contract_copy(tiny_artifacts, tmp_path)
    extra = ["--image", str(golden_image_path), "--click", "1,1,positive", "--out", str(tmp_path / "m.png")] if command == "predict" else []
    result = CliRunner().invoke(app, [command, str(old), *extra])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "re-export" in lines[0], result.output


def test_encoder_edge_convs_are_the_decoders_per_image_inputs(tiny_artifacts, golden, tiny_model):
    """The encoder's edge_conv_i is DLU stage i's convolution (bias included) of edge_map_i, as the
    phases of 2x2 pixel blocks, and the decoder given them computes what it computes from the
    five official features alone."""
    encoder = runtime.load(tiny_artifacts, "encoder")
    decoder = runtime.load(tiny_artifacts, "decoder")
    features = encoder.run({"image": golden["input"]})
    for index, stage in enumerate(tiny_model.decode_head.upsamplers):
        convolved = stage.conv(torch.from_numpy(features[f"edge_map_{index}"]))
        expected = torch.nn.functional.pixel_unshuffle(convolved, 2).numpy()
        assert_close(features[f"edge_conv_{index}"], expected, atol=1e-4)
    five = {name: features[name] for name in FEATURES}
    ref_label = golden["state_border/ref_label"]
    np.testing.assert_allclose(decoder.run({**features, "ref_label": ref_label})["logits"],
                               decoder.run({**five, "ref_label": ref_label})["logits"], atol=1e-4)


@pytest.mark.parametrize("size", [1024, 2048])
def test_cached_features_grow_by_less_than_a_quarter(size):
    """What a session caches per image: the five official features plus edge_conv_*."""
    from i2f_deploy.contract import EDGE_CONVS, IMAGE_FEATURES, io_contract

    outputs = io_contract(size, 256, 256)["encoder"]["outputs"]
    mib = {name: 4 * np.prod(spec["shape"]) / 2**20 for name, spec in outputs.items()}
    official = sum(mib[name] for name in IMAGE_FEATURES)
    derived = sum(mib[name] for name in EDGE_CONVS)
    assert official == {1024: 68, 2048: 272}[size]
    assert derived == {1024: 16, 2048: 64}[size]
    assert derived / official < 0.25  # +23.5 %


def tampered_copy(tiny_artifacts, tmp_path, how: str):
    """The tiny export with decoder.onnx (or its manifest entry) damaged in one way."""
    import shutil

    copy = tmp_path / how
    shutil.copytree(tiny_artifacts, copy)
    decoder = copy / "decoder.onnx"
    if how == "missing":
        decoder.unlink()
    elif how == "truncated":
        decoder.write_bytes(decoder.read_bytes()[:-100])
    elif how == "altered":
        data = bytearray(decoder.read_bytes())
        data[-10] ^= 0xFF  # inside the last initializer: the graph still loads
        decoder.write_bytes(bytes(data))
    elif how == "manifest-checksum":
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest["checksums"]["decoder.onnx"] = "0" * 64
        (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


DAMAGE = {"missing": "is missing", "truncated": "is truncated or altered", "altered": "is altered",
          "manifest-checksum": "is altered"}


@pytest.mark.parametrize("how", list(DAMAGE))
def test_runtime_refuses_a_damaged_file_naming_it(tiny_artifacts, tmp_path, how):
    from i2f_deploy.errors import I2FError

    damaged = tampered_copy(tiny_artifacts, tmp_path, how)
    with pytest.raises(I2FError, match=rf"decoder\.onnx {DAMAGE[how]}"):
        runtime.load(damaged, "decoder")
    runtime.load(damaged, "encoder")  # the other part's files are intact


def test_verification_can_be_skipped_once_a_product_has_verified(tiny_artifacts, tmp_path, golden):
    damaged = tampered_copy(tiny_artifacts, tmp_path, "manifest-checksum")
    decoder = runtime.load(damaged, "decoder", verify=False)
    out = decoder.run({**{name: golden[name] for name in FEATURES}, "ref_label": golden["state_small/ref_label"]})
    assert_close(out["logits"], golden["state_small/logits"], atol=1e-3)


@pytest.mark.parametrize("command", ["predict", "bench", "validate"])
def test_commands_refuse_an_altered_decoder_in_one_line(tiny_artifacts, tmp_path, golden_image_path, tiny_checkpoint, command):
    damaged = tampered_copy(tiny_artifacts, tmp_path, "altered")
    extra = {"predict": ["--image", str(golden_image_path), "--click", "5,5,positive", "--out", str(tmp_path / "m.png")],
             "bench": ["--checkpoint", str(tiny_checkpoint)], "validate": ["--checkpoint", str(tiny_checkpoint)]}[command]
    result = CliRunner().invoke(app, [command, str(damaged), *extra])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "decoder.onnx is altered" in lines[0], result.output
    assert not (tmp_path / "m.png").exists()


def test_onnxruntime_fuses_every_encoder_gelu(tiny_artifacts, tmp_path):
    """The exported GELUs are in the order ONNX Runtime's GeluFusion matches (values unchanged:
    the golden and PyTorch comparisons above run on this graph)."""
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(tiny_artifacts / "encoder.onnx"), options, providers=["CPUExecutionProvider"])
    optimized = [node.op_type for node in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    source = [node.op_type for node in onnx.load(str(tiny_artifacts / "encoder.onnx")).graph.node]
    assert "Erf" in source and "Erf" not in optimized and optimized.count("Gelu") == source.count("Erf")


@pytest.mark.parametrize(("backend", "label"), [("onnxruntime", "ONNX Runtime"), ("openvino", "OpenVINO")])
def test_function_bodies_serve_when_the_native_library_is_absent(backend, label, tiny_artifacts, golden, tiny_model, golden_encoded,
                                                               tmp_path, monkeypatch, caplog):
    """An install without a compiler: "auto" runs the function bodies (on ONNX Runtime the whole
    decoder.onnx), says so, and keeps parity; "native" is refused in one line."""
    from i2f_deploy.errors import I2FError

    monkeypatch.setenv("I2F_NATIVE_LIB_DIR", str(tmp_path))  # holds no library
    with caplog.at_level("WARNING"):
        decoder = runtime.load(tiny_artifacts, "decoder", backend)
    assert decoder.kernels == "function-body"
    assert f"{label} runs the custom ops' function bodies" in caplog.text and "was not built" in caplog.text
    feeds = {name: golden[name] for name in FEATURES}
    for case in DECODER_CASES:
        out = decoder.run({**feeds, "ref_label": golden[f"{case}/ref_label"]})
        reference = tiny_model.decode_detailed(*golden_encoded, torch.from_numpy(golden[f"{case}/ref_label"]))
        assert_close(out["logits"], golden[f"{case}/logits"], atol=1e-3, what=case)
        assert int(out["num_routed"]) == len(golden[f"{case}/full_attention_tokens"]), case
        np.testing.assert_array_equal(out["dpe_box"], reference.routing.box_values.numpy())
        np.testing.assert_array_equal(out["dlu_box"], golden[f"{case}/dlu_bbox"])
    with pytest.raises(I2FError, match=rf"native kernels requested on {backend}, but .* was not built") as refusal:
        runtime.load(tiny_artifacts, "decoder", backend, kernels="native")
    assert "\n" not in str(refusal.value)


def test_an_artifact_without_segments_runs_onnxruntime_on_the_function_bodies(tiny_artifacts, golden, tmp_path, caplog):
    """Exported before the segments existed (same contract): "auto" says so and runs the whole
    graph; "native" is refused with the fix."""
    import shutil

    from i2f_deploy.errors import I2FError

    old = tmp_path / "old"
    shutil.copytree(tiny_artifacts, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["files"]["decoder"]["segments"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(old / "decoder_segments")
    with caplog.at_level("WARNING"):
        decoder = runtime.load(old, "decoder", "onnxruntime")
    assert decoder.kernels == "function-body" and "no decoder segments" in caplog.text
    out = decoder.run({**{name: golden[name] for name in FEATURES}, "ref_label": golden["state_small/ref_label"]})
    assert_close(out["logits"], golden["state_small/logits"], atol=1e-3)
    with pytest.raises(I2FError, match=r"requested on onnxruntime, but the artifact has no decoder segments .*re-export") as refusal:
        runtime.load(old, "decoder", "onnxruntime", kernels="native")
    assert "\n" not in str(refusal.value)


def test_a_native_library_that_does_not_load_is_refused_in_one_line(tiny_artifacts, tmp_path, monkeypatch):
    """Built for another OpenVINO, or damaged: an error naming the fix, not a fallback."""
    from i2f_deploy.errors import I2FError

    (tmp_path / "libi2f_openvino.so").write_bytes(b"not a library")
    monkeypatch.setenv("I2F_NATIVE_LIB_DIR", str(tmp_path))
    with pytest.raises(I2FError, match=r"libi2f_openvino.so does not load into OpenVINO .*: .*reinstall i2f-deploy") as refusal:
        runtime.load(tiny_artifacts, "decoder", "openvino")
    assert "\n" not in str(refusal.value)


def _prompt_at(box: tuple[int, int, int, int] | None, value: int) -> np.ndarray:
    label = np.full((1, 1, 512, 512), 1, np.uint8)  # definite background
    if box is not None:
        left, top, right, bottom = box
        label[..., top:bottom, left:right] = value
    return label


BORDER_PROMPTS = {"left border": ((0, 200, 3, 260), 3), "top border": ((150, 0, 190, 2), 4), "right border": ((509, 100, 512, 180), 3),
                  "bottom border": ((256, 509, 257, 512), 4), "top-left corner": ((0, 0, 1, 1), 4),
                  "bottom-right corner": ((509, 509, 512, 512), 3), "one token": ((264, 264, 265, 265), 4)}


@pytest.mark.parametrize("name", list(BORDER_PROMPTS))
def test_onnxruntime_native_path_matches_the_function_bodies_and_pytorch_at_the_borders(tiny_artifacts, golden, tiny_model,
                                                                                        golden_encoded, name):
    """The segmented decoder with the kernels between its segments: boxes and routing exact,
    logits as the whole graph's and the model's."""
    native_decoder = runtime.load(tiny_artifacts, "decoder", "onnxruntime", 2, kernels="native")
    whole = runtime.load(tiny_artifacts, "decoder", "onnxruntime", 2, kernels="function-body")
    assert (native_decoder.kernels, whole.kernels) == ("native", "function-body")
    ref_label = _prompt_at(*BORDER_PROMPTS[name])
    feeds = {**{name: golden[name] for name in FEATURES}, "ref_label": ref_label}
    got, expected = native_decoder.run(feeds), whole.run(feeds)
    reference = tiny_model.decode_detailed(*golden_encoded, torch.from_numpy(ref_label))
    for output in ("num_routed", "dpe_box", "dlu_box"):
        np.testing.assert_array_equal(got[output], expected[output], err_msg=output)
    assert int(got["num_routed"]) == reference.routed_tokens.numel()
    np.testing.assert_array_equal(got["dpe_box"], reference.routing.box_values.numpy())
    assert_close(got["logits"], expected["logits"], atol=1e-4, what=name)
    assert_close(got["logits"], reference.logits.numpy(), atol=1e-3, what=name)


def test_the_segments_are_listed_and_cut_at_the_chosen_custom_ops(tiny_artifacts):
    """decoder.onnx stays whole; the plan calls each cut op's node once, the segments hold the
    others with their functions."""
    from i2f_deploy.contract import SegmentPlan
    from i2f_deploy.export.segments import CUT_OPS

    manifest = json.loads((tiny_artifacts / "manifest.json").read_text())
    files = manifest["files"]["decoder"]["segments"]
    assert files[0] == "decoder_segments/plan.json" and all(name in manifest["checksums"] for name in files)
    plan = SegmentPlan.read(tiny_artifacts / files[0])
    ops = [step.op for step in plan.steps if step.op]
    whole = [node.op_type for node in onnx.load(str(tiny_artifacts / "decoder.onnx")).graph.node if node.domain == DOMAIN]
    assert ops == [op for op in whole if op in CUT_OPS] and "HybridMoE" in CUT_OPS
    kept = []
    for step in plan.steps:
        if step.graph:
            segment = onnx.load(str(tiny_artifacts / "decoder_segments" / step.graph))
            inside = [node.op_type for node in segment.graph.node if node.domain == DOMAIN]
            assert not set(inside) & set(CUT_OPS) and {f.name for f in segment.functions} == set(inside)
            kept += inside
    assert kept == [op for op in whole if op not in CUT_OPS]
    assert plan.outputs == ["logits", "num_routed", "dpe_box", "dlu_box"]
