"""``i2f-deploy bench`` on the tiny artifacts: every backend and scenario runs, the report has its
schema, the work model follows the routing, and bad arguments are one-line errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from i2f_deploy.custom_ops.registry import OP_TYPES
from support.native import require_native
from typer.testing import CliRunner

from i2f_deploy.bench.scenarios import SCENARIOS, scenario_prompt_map
from i2f_deploy.bench.work import decoder_gflop, neck_flop
from i2f_deploy.cli import app
from i2f_deploy.export.segments import CUT_OPS
from i2f_deploy.prompt_map import DEFINITELY_FOREGROUND, UNKNOWN

pytestmark = pytest.mark.graph

ROW_FIELDS = {"size", "backend", "routing", "part", "scenario", "threads", "median_ms", "p10_ms", "p90_ms",
              "peak_rss_mb", "num_routed", "dpe_box_area", "dlu_box_area", "gflop", "gflop_parts", "gflop_per_s", "graph_ms",
              "outside_ms", "settings"}
CLICK_PARTS = ("session click", "HTTP click")


def bench(*args: str):
    return CliRunner().invoke(app, ["bench", *args])


def test_bench_runs_every_backend_and_scenario(tiny_artifacts, tiny_checkpoint, tmp_path):
    require_native()  # so both graph backends' rows come on both custom-op paths
    paths = {kind: tmp_path / f"bench.{kind}" for kind in ("json", "csv", "png")}
    profile = tmp_path / "profile.json"
    result = bench(str(tiny_artifacts), "--checkpoint", str(tiny_checkpoint), "--repeat", "1", "--warmup", "0",
                   "--json", str(paths["json"]), "--csv", str(paths["csv"]), "--plot", str(paths["png"]),
                   "--profile", str(profile), "--precision", "f32,bf16")
    assert result.exit_code == 0, result.output
    report = json.loads(paths["json"].read_text())
    rows = report["rows"]
    assert all(set(row) == ROW_FIELDS for row in rows)
    clicks = [r for r in rows if r["part"] in CLICK_PARTS]  # the click as the user feels it
    assert {(r["backend"], r["part"], r["scenario"]) for r in clicks} == {
        (b, part, s) for b in ("onnxruntime", "openvino") for part in CLICK_PARTS for s in SCENARIOS}
    for row in clicks:  # the graph's time is part of the click's
        assert 0 < row["graph_ms"] <= row["median_ms"] and row["outside_ms"] >= 0 and row["settings"]["image"] == "1536x1024"
        assert row["settings"]["kernels"] == "native"  # built here: both backends run the native kernels
    assert all("outside_graph" in s for s in report["speedups"] if s["part"] in CLICK_PARTS)
    rows = [r for r in rows if r["part"] not in CLICK_PARTS]
    decoder_rows = {(r["backend"], r["routing"], r["scenario"]) for r in rows if r["part"] == "decoder"}
    encoder_backends = ("onnxruntime", "openvino", "openvino-bf16")
    graph_backends = (*encoder_backends, "onnxruntime-native", "openvino-native", "openvino-bf16-native")
    expected = {(b, "dynamic", s) for b in ("torch", *graph_backends) for s in SCENARIOS}
    assert decoder_rows == expected | {("torch", "dense", s) for s in SCENARIOS}
    assert {r["backend"] for r in rows if r["part"] == "encoder"} == {"torch", *encoder_backends}
    assert {r["settings"].get("openvino_precision") for r in rows if r["backend"].startswith("openvino")} == {"f32", "bf16"}
    for row in rows:  # which path ran the custom ops, as the runner said
        assert row["settings"].get("kernels") == (None if row["backend"] == "torch"
                                                 else "native" if row["backend"].endswith("-native") else "function-body")
    for row in rows:
        assert row["p10_ms"] <= row["median_ms"] <= row["p90_ms"] and row["peak_rss_mb"] > 0
    by_key = {(r["backend"], r["routing"], r["scenario"]): r for r in rows if r["part"] == "decoder"}
    for scenario in SCENARIOS:  # every backend saw the same routing
        routed = {by_key[(b, "dynamic", scenario)]["num_routed"] for b in ("torch", *graph_backends)}
        assert len(routed) == 1, (scenario, routed)
        assert by_key[("torch", "dense", scenario)]["num_routed"] == 1024
    assert by_key[("torch", "dynamic", "first-click")]["num_routed"] == 1024
    assert by_key[("torch", "dynamic", "small")]["num_routed"] < by_key[("torch", "dynamic", "large")]["num_routed"]
    assert any(s["vs_eager_torch"] > 0 for s in report["speedups"])
    assert report["machine"]["gemm_gflop_per_s"]["2"] > 0  # the yardstick, measured in the run
    assert all(s["vs_gemm_rate"] > 0 for s in report["speedups"] if s["part"] == "decoder")
    encoders = [r for r in rows if r["part"] == "encoder"]
    for row in encoders:  # the graphs also compute the DLU's edge terms per image
        assert row["gflop"] > 0 and (row["gflop_parts"]["edge_terms"] > 0) == (row["backend"] != "torch")
    with paths["csv"].open() as handle:
        assert len(list(csv.DictReader(handle))) == len(rows) + len(clicks)
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    profiles = json.loads(profile.read_text())
    decoders = ("onnxruntime", "openvino", "onnxruntime-native", "openvino-native")
    assert sorted((p["backend"], p["part"], p["scenario"]) for p in profiles) == sorted(
        [(b, "encoder", "image") for b in ("onnxruntime", "openvino")]
        + [(b, "decoder", s) for b in decoders for s in ("first-click", "medium")])  # the goals' clicks
    for entry in profiles:
        assert entry["ops"]
        assert all(op["ms_per_run"] >= 0 and 0 <= op["share"] <= 1 for op in entry["ops"])
        if entry["part"] == "decoder" and entry["backend"] != "onnxruntime":  # time per custom op (ONNX Runtime's bodies: none)
            timed = set(CUT_OPS) if entry["backend"] == "onnxruntime-native" else set(OP_TYPES)  # the others run in its segments
            assert set(entry["custom_ops"]) == timed, entry["custom_ops"]


def test_scenarios_are_the_documented_prompt_states():
    first = scenario_prompt_map("first-click", 512)
    assert first.shape == (1, 1, 512, 512) and first[0, 0, 0, 0] == UNKNOWN and first[0, 0, 256, 256] == DEFINITELY_FOREGROUND
    medium = scenario_prompt_map("medium", 512)
    assert (medium != UNKNOWN).all()  # the previous prediction decided every pixel


def test_work_grows_with_routed_tokens_by_the_attention_cost(tiny_config):
    neck = tiny_config.model.neck
    attention_dim = neck.embed_dim // neck.downscale
    tokens = (tiny_config.target_size // 16) ** 2
    extra = neck_flop(tiny_config, 1) - neck_flop(tiny_config, 0)
    expert_hidden = int(neck.mlp_ratio * neck.embed_dim) // neck.downscale
    per_token = 4 * tokens * attention_dim - 4 * 2**neck.code_size * attention_dim
    per_token += 2 * (3 * neck.embed_dim * expert_hidden + neck.embed_dim * (1 + neck.downscale))
    assert extra == pytest.approx(neck.depth * per_token)
    assert decoder_gflop(tiny_config, 0, [0, 0, 0, 0], [0, 0, 0, 0]) < decoder_gflop(tiny_config, 0, [0, 0, 512, 512], [0, 0, 32, 32])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{art}", "--backends", "tensorrt"], "--backends: unknown tensorrt"),
        (["{art}", "--scenarios", "huge"], "--scenarios: unknown huge"),
        (["{art}", "--threads", "two"], "not a positive integer"),
        (["{art}", "--sizes", "2048"], "no artifact directory of that target size"),
        (["{art}", "--precision", "f16"], "--precision: unknown f16"),
        (["{art}", "--kernels", "fast"], "--kernels: unknown fast"),
        (["{art}", "--parts", "backbone"], "--parts: unknown backbone"),
        (["/nonexistent/artifacts"], "no manifest.json"),
        (["{art}", "--json", "/nonexistent/dir/out.json"], "does not exist"),
    ],
)
def test_bad_arguments_exit_2(tiny_artifacts, tiny_checkpoint, args, message):
    result = bench(*[arg.format(art=tiny_artifacts) for arg in args], "--checkpoint", str(tiny_checkpoint))
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_factored_dlu_work_is_counted_as_the_graphs_compute_it():
    """Base 1024, whole-image DLU box: 7.1 GFLOP direct (bicubic then 3x3 convolutions at the
    high resolution), about 2.1 factored (mixing and polyphase filters at the low resolution)."""
    from i2f_deploy.bench.work import dlu_flop
    from i2f_deploy.config import load_config

    config = load_config("inter2former-base-1024")
    locator = 2.0 * 4096 * (256 * 64 + 64 * 16 + 16 * 4 + 4 * 1)
    mixing = sum(2.0 * 4096 * 4**level * (256 // 4**level) * 9 * (64 // 4**level) for level in range(4))
    filters = sum(2.0 * 4096 * 4**level * (64 // 4**level) * (6 + 4) * 3 * 5 for level in range(4))
    assert dlu_flop(config, 64, 64, factored=True) == pytest.approx(locator + mixing + filters)
    assert dlu_flop(config, 64, 64) / 1e9 == pytest.approx(7.1, abs=0.05)
    assert dlu_flop(config, 64, 64, factored=True) / 1e9 == pytest.approx(2.07, abs=0.01)


def test_eager_pytorch_runs_in_a_process_of_its_own_and_decides_as_the_model(tiny_artifacts, tiny_checkpoint):
    """The eager contender's click is the model's (routing and boxes), timed by the child itself;
    closing it leaves no process behind."""
    import multiprocessing
    import os

    import torch

    from i2f_deploy.bench.eager import EagerProcess
    from i2f_deploy.bench.runner import Target, bench_image
    from i2f_deploy.contract import IMAGE_FEATURES

    target = Target(tiny_artifacts, tiny_checkpoint)
    model = target.model(target.routing)
    image = bench_image(target.size)
    with torch.no_grad():
        embeddings, edge_maps = model.encode(torch.from_numpy(image))
        features = dict(zip(IMAGE_FEATURES, [t.numpy() for t in (embeddings, *edge_maps)]))
        ref_label = scenario_prompt_map("medium", target.size)
        expected = model.decode_detailed(embeddings, edge_maps, torch.from_numpy(ref_label))
    process = EagerProcess(tiny_artifacts, tiny_checkpoint, target.routing, 1, image, features)
    try:
        assert process._process.pid != os.getpid()
        elapsed_ms, (num_routed, dpe_box, dlu_box) = process.decode(ref_label)
        assert elapsed_ms > 0 and process.encode() > 0
    finally:
        process.close()
    assert num_routed == expected.routed_tokens.numel()
    assert dpe_box == expected.routing.box_values.tolist() and dlu_box == expected.dlu_box.as_tensor().tolist()
    assert not multiprocessing.active_children()


def test_eager_pytorch_that_cannot_start_is_one_line(tiny_artifacts, tmp_path):
    from i2f_deploy.bench.eager import EagerProcess

    with pytest.raises(RuntimeError, match=r"eager PyTorch could not start: .*checkpoint") as caught:
        EagerProcess(tiny_artifacts, None, "dynamic", 1, np.zeros((1, 3, 8, 8), np.float32), {})
    assert "\n" not in str(caught.value)


def test_parts_choose_the_rows(tiny_artifacts, tiny_checkpoint, tmp_path):
    """``--parts decoder``: decoder rows only, no encoder or click rows; the profile has no encoder."""
    report, profile = tmp_path / "bench.json", tmp_path / "profile.json"
    result = bench(str(tiny_artifacts), "--checkpoint", str(tiny_checkpoint), "--parts", "decoder", "--scenarios", "medium",
                   "--backends", "torch,onnxruntime", "--kernels", "function-body", "--repeat", "1", "--warmup", "0",
                   "--json", str(report), "--profile", str(profile))
    assert result.exit_code == 0, result.output
    rows = json.loads(report.read_text())["rows"]
    assert {(r["backend"], r["routing"], r["part"]) for r in rows} == {
        ("torch", "dynamic", "decoder"), ("torch", "dense", "decoder"), ("onnxruntime", "dynamic", "decoder")}
    assert [(p["backend"], p["part"], p["scenario"]) for p in json.loads(profile.read_text())] == [
        ("onnxruntime", "decoder", "medium")]
