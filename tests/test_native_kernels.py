"""The native kernels (DLUUpsample; the neck's TokenRouting, BSQAttention, FullAttention, HybridMoE, PromptConvolution) against
their ONNX function bodies (ONNX Runtime) and the PyTorch modules they replace, called directly
(C entry points) and inside OpenVINO; the logits' upsampling against preprocess's NumPy code;
malformed inputs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from itertools import pairwise

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from i2f_deploy.custom_ops import (
    DOMAIN,
    VERSION,
    bsq_attention,
    dlu_upsample,
    full_attention,
    hybrid_moe,
    native,
    prompt_convolution,
    token_routing,
)
from i2f_deploy.custom_ops.native import NativeKernelError
from onnx import TensorProto, helper, numpy_helper
from support.dlu import BOXES, GRID_H, GRID_W, random_stage
from support.native import require_native

from i2f_deploy import preprocess
from i2f_deploy.compare import assert_close
from i2f_deploy.export.dlu import FactoredStage
from i2f_deploy.export.stable_norm import standardise
from i2f_deploy.model.head import Upsample2x
from i2f_deploy.model.routing import Box, crop

pytestmark = pytest.mark.graph

STAGE_CHANNELS = (256, 64, 16, 4)  # a stage's input channels; its output has a quarter


@pytest.fixture(autouse=True, scope="module")
def _kernels_built():
    require_native(openvino=False)


def _model(node: onnx.NodeProto, edge_weight: np.ndarray | None = None) -> onnx.ModelProto:
    """``node`` with its function; ``edge_weight`` a constant when given (as in the decoder: a
    backend may need the convolution weights constant), else an input like the others."""
    names = [name for name in dlu_upsample.INPUTS if edge_weight is None or name != "edge_weight"]
    inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, [None]) if name == "box"
              else helper.make_tensor_value_info(name, TensorProto.FLOAT, [None] * 4) for name in names]
    constants = [] if edge_weight is None else [onnx.numpy_helper.from_array(edge_weight, "edge_weight")]
    graph = helper.make_graph([node], "dlu", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], constants)
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid(DOMAIN, VERSION)]
    return helper.make_model(graph, opset_imports=opsets, functions=[dlu_upsample.function_proto()])


def run_function_body(feeds: dict[str, np.ndarray], channels: int) -> np.ndarray:
    node = helper.make_node(dlu_upsample.OP_TYPE, list(dlu_upsample.INPUTS), ["y"], domain=DOMAIN, channels=channels)
    session = ort.InferenceSession(_model(node).SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def stage_feeds(upsampler: Upsample2x, x: torch.Tensor, edge_map: torch.Tensor, box: tuple[int, int, int, int]) -> dict[str, np.ndarray]:
    """The op's inputs for ``box`` of ``x``, as the decoder graph computes them."""
    stage = FactoredStage(upsampler)
    with torch.no_grad():
        crop_x = crop(x, Box(*box))
        mixed = F.conv2d(F.pad(standardise(crop_x, stage.eps), (2,) * 4, mode="replicate"), stage.mix, stage.mix_bias)
        term = F.pixel_unshuffle(upsampler.conv(edge_map), 2)
    return {"mixed": mixed.numpy(), "edge_map": edge_map.numpy(), "edge_term": term.numpy(),
            "edge_weight": stage.edge_weight.numpy(), "box": np.array(box, np.int64)}


def random_inputs(channels: int, grid_h: int, grid_w: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, channels, grid_h, grid_w, generator=generator) * 3 + 1
    return x, torch.randn(1, channels, 2 * grid_h, 2 * grid_w, generator=generator)


def call_native(feeds: dict[str, np.ndarray], channels: int) -> np.ndarray:
    return native.dlu_upsample(*(feeds[name] for name in dlu_upsample.INPUTS), channels)


@pytest.mark.parametrize("channels", STAGE_CHANNELS)
@pytest.mark.parametrize("name", list(BOXES))
def test_kernel_matches_the_function_body_and_the_pytorch_stage(channels, name):
    """Every border, a one-token box and the whole image, for each stage's channel counts."""
    upsampler = random_stage(channels, seed=channels)
    stage = FactoredStage(upsampler)
    x, edge_map = random_inputs(channels, GRID_H, GRID_W, seed=channels + 1)
    feeds = stage_feeds(upsampler, x, edge_map, BOXES[name])
    y = call_native(feeds, stage.channels)
    with torch.no_grad():
        eager = stage.upsample_mixed(*(torch.from_numpy(feeds[n]) for n in ("mixed", "edge_map", "edge_term")),
                                     torch.from_numpy(feeds["box"]))
        box = Box(*BOXES[name])
        direct = upsampler.conv(F.interpolate(upsampler.norm(crop(x, box)), scale_factor=2, mode="bicubic") + crop(edge_map, box.scaled(2)))
    assert_close(y, run_function_body(feeds, stage.channels), atol=1e-4, what=f"{name}: function body")
    assert_close(y, eager.numpy(), atol=1e-4, what=f"{name}: FactoredStage")
    assert_close(y, direct.numpy(), atol=1e-4 * max(1.0, float(direct.abs().max())), what=f"{name}: direct stage")


@pytest.mark.parametrize("size", [512, 1024, pytest.param(2048, marks=pytest.mark.slow)])
@pytest.mark.parametrize("where", ["whole image", "bottom-right corner"])
def test_last_stage_at_the_target_sizes(size, where):
    """The last stage (4 -> 1 channels) outputs the full resolution: the kernel's largest images."""
    grid = size // 2
    x, edge_map = random_inputs(4, grid, grid, seed=size + 1)
    box = (0, 0, grid, grid) if where == "whole image" else (grid // 3, grid // 2, grid, grid)
    feeds = stage_feeds(random_stage(4, seed=size), x, edge_map, box)
    y = call_native(feeds, 1)
    assert y.shape == (1, 1, 2 * (box[3] - box[1]), 2 * (box[2] - box[0]))
    assert_close(y, run_function_body(feeds, 1), atol=1e-4)


@pytest.mark.parametrize("backend_kernels", ["native", "function-body"])
def test_openvino_runs_the_op_on_either_path(tmp_path, backend_kernels):
    from i2f_deploy.runtime.openvino_backend import OpenVinoRunner

    require_native()
    upsampler = random_stage(16, seed=7)
    x, edge_map = random_inputs(16, GRID_H, GRID_W, seed=8)
    node = helper.make_node(dlu_upsample.OP_TYPE, list(dlu_upsample.INPUTS), ["y"], domain=DOMAIN, channels=4)
    path = tmp_path / "dlu.onnx"
    onnx.save(_model(node, stage_feeds(upsampler, x, edge_map, BOXES["middle"])["edge_weight"]), path)
    runner = OpenVinoRunner(path, threads=2, kernels=backend_kernels)
    assert runner.kernels == backend_kernels
    for name, box in BOXES.items():
        feeds = stage_feeds(upsampler, x, edge_map, box)
        (y,) = runner.run(feeds).values()  # OpenVINO may name it after the function body's last node
        assert_close(y, run_function_body(feeds, 4), atol=1e-4, what=name)


def _valid_feeds() -> dict[str, np.ndarray]:
    x, edge_map = random_inputs(16, GRID_H, GRID_W, seed=10)
    return stage_feeds(random_stage(16, seed=9), x, edge_map, BOXES["middle"])


MALFORMED = {
    "box beyond the grid": ({"box": np.array([6, 1, 10, 5], np.int64)}, 4, "must lie in the 7x9 grid"),
    "negative box": ({"box": np.array([-1, 1, 3, 5], np.int64)}, 4, "must lie in the"),
    "box not the crop's size": ({"box": np.array([2, 1, 5, 5], np.int64)}, 4, "span the crop's 4x4"),
    "box of 3 values": ({"box": np.array([2, 1, 6], np.int64)}, 4, "box must have 4 values"),
    "channels disagree": ({}, 5, "must have 9 x channels = 45 channels"),
    "zero channels": ({}, 0, "channels must be at least 1"),
    "edge term of other channels": ({"edge_term": np.zeros((1, 12, GRID_H, GRID_W), np.float32)}, 4, "edge_term"),
    "edge map of another size": ({"edge_map": np.zeros((1, 16, 2 * GRID_H + 1, 2 * GRID_W), np.float32)}, 4, "twice edge_term"),
    "edge weight not 3x3": ({"edge_weight": np.zeros((4, 16, 1, 3), np.float32)}, 4, "edge_weight"),
    "mixed without its padding": ({"mixed": np.zeros((1, 36, 4, 4), np.float32)}, 4, "at least 5x5"),
    "rank 3": ({"mixed": np.zeros((36, 8, 8), np.float32)}, 4, "rank-4"),
    "float64": ({"mixed": np.zeros((1, 36, 8, 8), np.float64)}, 4, "float32"),
    "int32 box": ({"box": np.array([2, 1, 6, 5], np.int32)}, 4, "int64"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_kernel_refuses_malformed_inputs_in_one_line(name):
    changes, channels, message = MALFORMED[name]
    feeds = {**_valid_feeds(), **changes}
    with pytest.raises(NativeKernelError) as refusal:
        call_native(feeds, channels)
    text = str(refusal.value)
    assert message in text and "\n" not in text, text


def test_openvino_refuses_a_box_outside_the_grid_with_nan(tmp_path):
    """OpenVINO's CPU plugin drops an extension's errors (it keeps the stale output), so the op
    refuses by filling its output with NaN; the next valid call is served."""
    from i2f_deploy.runtime.openvino_backend import OpenVinoRunner

    require_native()
    feeds = _valid_feeds()
    node = helper.make_node(dlu_upsample.OP_TYPE, list(dlu_upsample.INPUTS), ["y"], domain=DOMAIN, channels=4)
    path = tmp_path / "dlu.onnx"
    onnx.save(_model(node), path)
    runner = OpenVinoRunner(path, threads=1, kernels="native")
    assert_close(runner.run(feeds)["y"], run_function_body(feeds, 4), atol=1e-4)
    refused = runner.run({**feeds, "box": np.array([6, 1, 10, 5], np.int64)})["y"]
    assert refused.shape == (1, 4, 8, 8) and np.isnan(refused).all()
    assert_close(runner.run(feeds)["y"], run_function_body(feeds, 4), atol=1e-4)


def test_openvino_native_results_do_not_depend_on_the_thread_count(tmp_path):
    """The kernel splits its work over OpenVINO's threads by output channel and row block, each
    output written by one task: one thread and two give the same bits."""
    from i2f_deploy.runtime.openvino_backend import OpenVinoRunner

    require_native()
    x, edge_map = random_inputs(16, GRID_H, GRID_W, seed=11)
    feeds = stage_feeds(random_stage(16, seed=12), x, edge_map, BOXES["whole image"])
    node = helper.make_node(dlu_upsample.OP_TYPE, list(dlu_upsample.INPUTS), ["y"], domain=DOMAIN, channels=4)
    path = tmp_path / "dlu.onnx"
    onnx.save(_model(node), path)
    one, two = (OpenVinoRunner(path, threads=threads, kernels="native").run(feeds)["y"] for threads in (1, 2))
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one, call_native(feeds, 4))  # and the single-threaded C entry's


# --- the neck's ops: TokenRouting, BSQAttention, FullAttention, HybridMoE ------------------------

ROUTING = {"stride": 16, "kernel_size": 7}


def _one_node_model(module, attributes: dict, feeds: dict[str, np.ndarray], output_types: list[int]) -> onnx.ModelProto:
    """A model of one ``module`` node with its function, inputs typed (rank only) from ``feeds``."""
    node = helper.make_node(module.OP_TYPE, list(module.INPUTS), list(module.OUTPUTS), domain=DOMAIN, **attributes)
    inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(feeds[name].dtype), [None] * feeds[name].ndim)
              for name in module.INPUTS]
    outputs = [helper.make_tensor_value_info(name, kind, None) for name, kind in zip(module.OUTPUTS, output_types)]
    graph = helper.make_graph([node], module.OP_TYPE, inputs, outputs)
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid(DOMAIN, VERSION)]
    return helper.make_model(graph, opset_imports=opsets, functions=[module.function_proto(**attributes)])


def _function_body(module, attributes: dict, feeds: dict[str, np.ndarray], output_types: list[int]) -> list[np.ndarray]:
    model = _one_node_model(module, attributes, feeds, output_types)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _openvino_runs(tmp_path, module, attributes: dict, feeds: dict[str, np.ndarray], output_types: list[int],
                   kernels: str, threads: int = 2) -> list[np.ndarray]:
    from i2f_deploy.runtime.openvino_backend import OpenVinoRunner

    path = tmp_path / f"{module.OP_TYPE}.onnx"
    onnx.save(_one_node_model(module, attributes, feeds, output_types), path)
    runner = OpenVinoRunner(path, threads=threads, kernels=kernels)
    assert runner.kernels == kernels
    return list(runner.run(feeds).values())  # in the node's output order


def _map_with(size: int, value: int, box: tuple[int, int, int, int] | None, background: int = 1) -> np.ndarray:
    """A ``size`` map of ``background`` with ``value`` in ``box`` (left, top, right, bottom)."""
    label = np.full((1, 1, size, size), background, np.uint8)
    if box is not None:
        left, top, right, bottom = box
        label[..., top:bottom, left:right] = value
    return label


def routing_maps(size: int) -> dict[str, np.ndarray]:
    """Routing extremes, prompts at each border and corner, random and scattered maps."""
    from support.prompt_maps import random_prompt_map, scattered_prompt_map

    last = size - 3
    maps = {
        "nothing routed (all definite background)": _map_with(size, 0, None, background=0),
        "everything routed (all unknown)": _map_with(size, 2, None, background=2),
        "no prompt (whole-map box)": _map_with(size, 1, None),
        "left border": _map_with(size, 3, (0, size // 2, 3, size // 2 + 5)),
        "top border": _map_with(size, 4, (size // 3, 0, size // 3 + 9, 2)),
        "right border": _map_with(size, 3, (last, size // 4, size, size // 4 + 20)),
        "bottom border": _map_with(size, 0, (size // 2, last, size // 2 + 1, size), background=1),
        "top-left corner": _map_with(size, 4, (0, 0, 1, 1)),
        "bottom-right corner": _map_with(size, 3, (last, last, size, size)),
        "one pixel near a token edge": _map_with(size, 4, (size // 2 + 13, size // 2 + 2, size // 2 + 14, size // 2 + 3)),
        "unknown patch": _map_with(size, 2, (40, 40, 80, 72)),
    }
    rng = np.random.default_rng(size)
    if size == 512:  # the helpers draw 512-pixel maps
        maps.update({f"random {i}": random_prompt_map(rng).numpy() for i in range(6)})
        maps.update({f"scattered {i}": scattered_prompt_map(rng).numpy() for i in range(6)})
    return maps


@pytest.mark.parametrize("size", [512, 1024, 2048])
def test_routing_kernel_matches_the_function_body_and_the_router(size):
    types = [TensorProto.INT64] * 3
    for name, label in routing_maps(size).items():
        got = native.token_routing(label, **ROUTING)
        body = _function_body(token_routing, ROUTING, {"ref_label": label}, types)
        eager = [t.numpy() for t in token_routing.reference(torch.from_numpy(label), **ROUTING)]
        for what, expected in (("function body", body), ("router", eager)):
            for output, a, b in zip(token_routing.OUTPUTS, got, expected):
                np.testing.assert_array_equal(a, b, err_msg=f"{size} {name}: {output} vs the {what}")
    assert native.token_routing(routing_maps(size)["nothing routed (all definite background)"], **ROUTING)[1] == 0
    assert native.token_routing(routing_maps(size)["everything routed (all unknown)"], **ROUTING)[1] == (size // 16) ** 2


def test_routing_kernel_on_a_one_token_map():
    for value in range(5):
        label = _map_with(16, value, None, background=value)
        got = native.token_routing(label, **ROUTING)
        for a, b in zip(got, _function_body(token_routing, ROUTING, {"ref_label": label}, [TensorProto.INT64] * 3)):
            np.testing.assert_array_equal(a, b, err_msg=f"value {value}")


ROUTING_MALFORMED = {
    "float map": (np.ones((1, 1, 32, 32), np.float32), ROUTING, "uint8"),
    "rank 3": (np.ones((1, 32, 32), np.uint8), ROUTING, "rank 4"),
    "two maps": (np.ones((2, 1, 32, 32), np.uint8), ROUTING, "must be [1, 1, H, W]"),
    "size not a multiple of the stride": (np.ones((1, 1, 40, 32), np.uint8), ROUTING, "multiples of the stride"),
    "label 7": (_map_with(32, 7, (3, 3, 5, 5)), ROUTING, "ref_label holds 7"),
    "window beyond the next token": (np.ones((1, 1, 32, 32), np.uint8), {"stride": 2, "kernel_size": 7}, "kernel_size"),
    "stride 0": (np.ones((1, 1, 32, 32), np.uint8), {"stride": 0, "kernel_size": 7}, "stride must be"),
}


@pytest.mark.parametrize("name", list(ROUTING_MALFORMED))
def test_routing_kernel_refuses_malformed_inputs_in_one_line(name):
    label, attributes, message = ROUTING_MALFORMED[name]
    with pytest.raises(NativeKernelError) as refusal:
        native.token_routing(label, **attributes)
    assert message in str(refusal.value) and "\n" not in str(refusal.value), str(refusal.value)


def bsq_case(num_tokens: int, num_queries: int, seed: int) -> tuple[dict[str, np.ndarray], dict, torch.nn.Module, list[torch.Tensor]]:
    from i2f_deploy.model.attention import BSQAttention
    from i2f_deploy.model.random_weights import randomize_weights

    attention = BSQAttention(32, 8)
    randomize_weights(attention, seed=seed)
    attention.refresh_constants()
    generator = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(n, 32, generator=generator) for n in (num_queries, num_tokens, num_tokens))
    tensors = (q, k, v, attention.code_proj.weight, attention.code_proj.bias, attention.code_keys)
    feeds = dict(zip(bsq_attention.INPUTS, (t.detach().numpy().copy() for t in tensors)))
    return feeds, {"scale": float(attention.scale), "code_size": 8}, attention, [q, k, v]


def call_bsq(feeds: dict[str, np.ndarray], attributes: dict) -> np.ndarray:
    return native.bsq_attention(*(feeds[name] for name in bsq_attention.INPUTS), **attributes)


@pytest.mark.parametrize("size", [512, 1024, 2048])
@pytest.mark.parametrize("routed", ["none", "some", "all"])
def test_bsq_kernel_matches_the_function_body_and_the_module(size, routed):
    """N tokens of the size's grid; the queries are the unrouted tokens (all, some or none)."""
    num_tokens = (size // 16) ** 2
    num_queries = {"none": num_tokens, "some": num_tokens // 3, "all": 0}[routed]
    feeds, attributes, attention, (q, k, v) = bsq_case(num_tokens, num_queries, seed=size)
    got = call_bsq(feeds, attributes)
    assert got.shape == (num_queries, 32)
    with torch.no_grad():
        eager = attention(q, k, v).numpy()
    assert_close(got, eager, atol=1e-5, what="module")
    if num_queries:  # ONNX Runtime's function body takes no empty query (its MatMul of [0, 32])
        assert_close(got, _function_body(bsq_attention, attributes, feeds, [TensorProto.FLOAT])[0], atol=1e-5, what="function body")


def test_bsq_kernel_with_crowded_codes():
    """Most keys share a handful of codes (the other codes unused, masked out)."""
    feeds, attributes, attention, (q, k, v) = bsq_case(1024, 700, seed=4)
    feeds["code_bias"] = feeds["code_bias"] + 3.0
    with torch.no_grad():
        attention.code_proj.bias += 3.0
        eager = attention(q, k, v).numpy()
    assert_close(call_bsq(feeds, attributes), eager, atol=1e-5)


BSQ_MALFORMED = {
    "query of another width": ({"query": np.zeros((5, 16), np.float32)}, {}, "query [5, 16] must be [M, 32]"),
    "value of other tokens": ({"value": np.zeros((9, 32), np.float32)}, {}, "value [9, 32] must be key's shape"),
    "no keys": ({"key": np.zeros((0, 32), np.float32), "value": np.zeros((0, 32), np.float32)}, {}, "must hold 1.."),
    "code keys of 7 bits": ({"code_keys": np.zeros((128, 32), np.float32)}, {}, "code_keys [128, 32] must be [2^code_size, D]"),
    "code weight disagrees": ({"code_weight": np.zeros((6, 32), np.float32)}, {}, "code_weight [6, 32]"),
    "code size 0": ({}, {"code_size": 0}, "code_size must be 1..16"),
    "infinite scale": ({}, {"scale": float("inf")}, "scale must be finite"),
    "float64 query": ({"query": np.zeros((5, 32), np.float64)}, {}, "float32"),
    "rank 3 key": ({"key": np.zeros((1, 64, 32), np.float32)}, {}, "key must have rank 2"),
}


@pytest.mark.parametrize("name", list(BSQ_MALFORMED))
def test_bsq_kernel_refuses_malformed_inputs_in_one_line(name):
    changes, attribute_changes, message = BSQ_MALFORMED[name]
    feeds, attributes, _, _ = bsq_case(64, 5, seed=5)
    with pytest.raises(NativeKernelError) as refusal:
        call_bsq({**feeds, **changes}, {**attributes, **attribute_changes})
    assert message in str(refusal.value) and "\n" not in str(refusal.value), str(refusal.value)


def attention_case(grid: int, query_tokens: np.ndarray | list[int], seed: int
                   ) -> tuple[dict[str, np.ndarray], dict, torch.nn.Module, list[torch.Tensor]]:
    """FullAttention over a ``grid`` x ``grid`` token map (the target size / 16) for the given
    tokens' queries; RoPE as the shipped configurations set it."""
    from i2f_deploy.model.attention import FullAttention

    attention = FullAttention(32, grid, ratio=0.5, theta=10000.0)
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.as_tensor(np.asarray(query_tokens, np.int64))
    q = torch.randn(len(tokens), 32, generator=generator)
    k, v = (torch.randn(grid * grid, 32, generator=generator) for _ in range(2))
    tensors = (q, k, v, tokens, attention.rope_cos, attention.rope_sin)
    feeds = dict(zip(full_attention.INPUTS, (t.numpy().copy() for t in tensors)))
    return feeds, {"scale": float(attention.scale)}, attention, [q, k, v, tokens]


def call_attention(feeds: dict[str, np.ndarray], attributes: dict, threads: int = 1) -> np.ndarray:
    return native.full_attention(*(feeds[name] for name in full_attention.INPUTS), **attributes, threads=threads)


def _routed_tokens(grid: int, which: str) -> np.ndarray:
    tokens = grid * grid
    rng = np.random.default_rng(grid)
    return {"none": np.zeros(0, np.int64), "one": np.array([tokens // 2 + 3], np.int64),
            "some": np.sort(rng.choice(tokens, tokens // 7, replace=False)), "all": np.arange(tokens)}[which]


@pytest.mark.parametrize("size", [512, 1024, pytest.param(2048, marks=pytest.mark.slow)])
@pytest.mark.parametrize("routed", ["none", "one", "some", "all"])
def test_full_attention_kernel_matches_the_function_body_and_the_module(size, routed):
    """The routed tokens' queries over the size's token grid: none (M = 0), a single token, some,
    and all of them (the first click)."""
    grid = size // 16
    feeds, attributes, attention, (q, k, v, tokens) = attention_case(grid, _routed_tokens(grid, routed), seed=size)
    got = call_attention(feeds, attributes, threads=2)
    assert got.shape == (len(tokens), 32)
    with torch.no_grad():
        eager = attention(q, k, v, tokens).numpy()
    assert_close(got, eager, atol=1e-5, what="module")
    body = _function_body(full_attention, attributes, feeds, [TensorProto.FLOAT])[0]
    assert_close(got, body, atol=1e-5, what="function body")


def test_full_attention_kernel_with_peaked_scores():
    """Large scores (a softmax close to one-hot), repeated query tokens and a key count no
    multiple of a key tile."""
    from i2f_deploy.model.attention import FullAttention

    feeds, attributes, _, _ = attention_case(9, [80, 0, 40, 40, 7], seed=3)
    feeds["query"] *= 30.0
    attention = FullAttention(32, 9, ratio=0.5, theta=10000.0)
    with torch.no_grad():
        eager = attention(*(torch.from_numpy(feeds[name]) for name in ("query", "key", "value", "query_tokens"))).numpy()
    # scores near 100: their rounding (1e-7 relative) moves the weights by 1e-5 relative
    assert_close(call_attention(feeds, attributes), eager, atol=5e-5)


_ATTENTION_IN_ANOTHER_PROCESS = """
import sys
import numpy as np
from i2f_deploy.custom_ops import full_attention, native
feeds = dict(np.load(sys.argv[1]))
np.save(sys.argv[2], native.full_attention(*(feeds[name] for name in full_attention.INPUTS), float(sys.argv[3])))
"""


def test_full_attention_kernel_portable_version_gives_the_values_of_the_default(tmp_path):
    """Where the CPU has AVX-512 the attention runs a third version of its loops;
    I2F_NATIVE_PORTABLE (read once per process) makes a process run the portable one instead."""
    feeds, attributes, _, _ = attention_case(40, _routed_tokens(40, "some"), seed=4)
    np.savez(tmp_path / "case.npz", **feeds)
    environment = {**os.environ, "I2F_NATIVE_PORTABLE": "1"}
    subprocess.run([sys.executable, "-c", _ATTENTION_IN_ANOTHER_PROCESS, str(tmp_path / "case.npz"), str(tmp_path / "y.npy"),
                    repr(attributes["scale"])], env=environment, check=True)
    assert_close(np.load(tmp_path / "y.npy"), call_attention(feeds, attributes), atol=1e-5, what="portable version")


def test_full_attention_kernel_of_another_width():
    """A head width other than the model's 32 takes the plain loop of the weighted values."""
    from i2f_deploy.model.attention import FullAttention

    attention = FullAttention(12, 7, ratio=0.5, theta=10000.0)
    generator = torch.Generator().manual_seed(6)
    tokens = torch.tensor([48, 3, 17])
    q, k, v = torch.randn(3, 12, generator=generator), torch.randn(49, 12, generator=generator), torch.randn(49, 12, generator=generator)
    feeds = dict(zip(full_attention.INPUTS, (t.numpy().copy() for t in (q, k, v, tokens, attention.rope_cos, attention.rope_sin))))
    with torch.no_grad():
        eager = attention(q, k, v, tokens).numpy()
    assert_close(call_attention(feeds, {"scale": float(attention.scale)}), eager, atol=1e-5)


ATTENTION_MALFORMED = {
    "query of another width": ({"query": np.zeros((5, 16), np.float32)}, {}, "query [5, 16] must be [M, 32]"),
    "value of other tokens": ({"value": np.zeros((9, 32), np.float32)}, {}, "value [9, 32] must be key's shape [64, 32]"),
    "no keys": ({name: np.zeros((0, 32), np.float32) for name in ("key", "value", "rope_cos", "rope_sin")}, {}, "must hold 1.."),
    "odd width": ({name: np.zeros((64, 31), np.float32) for name in ("key", "value", "rope_cos", "rope_sin")}, {},
                  "even number of columns"),
    "tokens for other queries": ({"query_tokens": np.arange(4, dtype=np.int64)}, {}, "query_tokens has 4 values for 5 queries"),
    "token beyond the grid": ({"query_tokens": np.array([0, 1, 64, 2, 3], np.int64)}, {}, "query token 64 is outside 0..63"),
    "negative token": ({"query_tokens": np.array([0, 1, -1, 2, 3], np.int64)}, {}, "query token -1 is outside"),
    "rope table of another grid": ({"rope_sin": np.zeros((16, 32), np.float32)}, {}, "rope_sin [16, 32] must be key's shape"),
    "infinite scale": ({}, {"scale": float("inf")}, "scale must be finite"),
    "int32 tokens": ({"query_tokens": np.arange(5, dtype=np.int32)}, {}, "int64"),
    "float64 key": ({"key": np.zeros((64, 32), np.float64)}, {}, "float32"),
    "rank 3 query": ({"query": np.zeros((1, 5, 32), np.float32)}, {}, "query must have rank 2"),
}


@pytest.mark.parametrize("name", list(ATTENTION_MALFORMED))
def test_full_attention_kernel_refuses_malformed_inputs_in_one_line(name):
    changes, attribute_changes, message = ATTENTION_MALFORMED[name]
    feeds, attributes, _, _ = attention_case(8, [3, 9, 0, 63, 20], seed=5)
    with pytest.raises(NativeKernelError) as refusal:
        call_attention({**feeds, **changes}, {**attributes, **attribute_changes})
    assert message in str(refusal.value) and "\n" not in str(refusal.value), str(refusal.value)


def moe_case(num_tokens: int, routed_share: float, seed: int) -> tuple[dict[str, np.ndarray], dict, torch.nn.Module]:
    from i2f_deploy.model.moe import HybridMoE
    from i2f_deploy.model.random_weights import randomize_weights

    moe = HybridMoE(256, 512, 8)
    randomize_weights(moe, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(num_tokens, 256, generator=generator)
    routed = torch.nonzero(torch.rand(num_tokens, generator=generator) < routed_share).flatten()
    tensors = (x, routed, *hybrid_moe.weight_inputs(moe))
    feeds = dict(zip(hybrid_moe.INPUTS, (t.detach().numpy().copy() for t in tensors)))
    return feeds, {"num_experts": 8, "epsilon": float(moe.shared_ln.eps)}, moe


def call_moe(feeds: dict[str, np.ndarray], attributes: dict) -> np.ndarray:
    return native.hybrid_moe(feeds["x"], feeds["routed"], [feeds[name] for name in hybrid_moe.WEIGHTS], **attributes)


@pytest.mark.parametrize("size", [512, 1024, pytest.param(2048, marks=pytest.mark.slow)])
@pytest.mark.parametrize("routed_share", [0.0, 0.3, 1.0])
def test_moe_kernel_matches_the_function_body_and_the_module(size, routed_share):
    feeds, attributes, moe = moe_case((size // 16) ** 2, routed_share, seed=size)
    got = call_moe(feeds, attributes)
    with torch.no_grad():
        eager = moe(torch.from_numpy(feeds["x"]), torch.from_numpy(feeds["routed"])).numpy()
    assert_close(got, eager, atol=1e-4, what="module")
    assert_close(got, _function_body(hybrid_moe, attributes, feeds, [TensorProto.FLOAT])[0], atol=1e-4, what="function body")


@pytest.mark.parametrize(("dim", "hidden"), [(20, 36), (40, 78)])
def test_moe_kernel_with_odd_sizes(dim, hidden):
    """Widths that are no multiple of the vector lanes (below one block of columns, and one block
    and a remainder), and a token count no multiple of a tile or of a block of rows."""
    from i2f_deploy.model.moe import HybridMoE
    from i2f_deploy.model.random_weights import randomize_weights

    moe = HybridMoE(dim, hidden, 3)
    randomize_weights(moe, seed=6)
    x = torch.randn(37, dim, generator=torch.Generator().manual_seed(6))
    routed = torch.tensor([36, 0, 5, 17, 18, 19, 20, 21, 22])  # not ascending
    feeds = dict(zip(hybrid_moe.INPUTS, (t.detach().numpy().copy() for t in (x, routed, *hybrid_moe.weight_inputs(moe)))))
    with torch.no_grad():
        eager = moe(x, routed).numpy()
    assert_close(call_moe(feeds, {"num_experts": 3, "epsilon": 1e-5}), eager, atol=1e-5)


_MOE_IN_ANOTHER_PROCESS = """
import sys
import numpy as np
from i2f_deploy.custom_ops import hybrid_moe, native
feeds = dict(np.load(sys.argv[1]))
y = native.hybrid_moe(feeds["x"], feeds["routed"], [feeds[name] for name in hybrid_moe.WEIGHTS], 8, float(sys.argv[3]))
np.save(sys.argv[2], y)
"""


def test_moe_kernel_portable_version_gives_the_values_of_the_default(tmp_path):
    """Where the CPU has AVX-512 the expert products run a third version of their loop;
    I2F_NATIVE_PORTABLE (read once per process) makes a process run the portable one instead."""
    feeds, attributes, _ = moe_case(1000, 0.3, seed=3)
    np.savez(tmp_path / "case.npz", **feeds)
    environment = {**os.environ, "I2F_NATIVE_PORTABLE": "1"}
    subprocess.run([sys.executable, "-c", _MOE_IN_ANOTHER_PROCESS, str(tmp_path / "case.npz"), str(tmp_path / "y.npy"),
                    repr(attributes["epsilon"])], env=environment, check=True)
    assert_close(np.load(tmp_path / "y.npy"), call_moe(feeds, attributes), atol=1e-5, what="portable version")


MOE_MALFORMED = {
    "routed token beyond x": ({"routed": np.array([3, 64], np.int64)}, {}, "routed token 64 is outside 0..63"),
    "negative routed token": ({"routed": np.array([-1], np.int64)}, {}, "routed token -1 is outside"),
    "routed token twice": ({"routed": np.array([3, 5, 3], np.int64)}, {}, "routed token 3 is listed twice"),
    "more routed than tokens": ({"routed": np.arange(65, dtype=np.int64) % 64}, {}, "at most N = 64"),
    "int32 routed": ({"routed": np.array([3], np.int32)}, {}, "int64"),
    "float64 x": ({"x": np.zeros((64, 256), np.float64)}, {}, "float32"),
    "x of another width": ({"x": np.zeros((64, 128), np.float32)}, {}, "shared_w1 [64, 256] must be [64, 128]"),
    "expert weights of another count": ({"experts_w1": np.zeros((7, 64, 256), np.float32)}, {}, "experts_w1 [7, 64, 256]"),
    "num_experts disagrees": ({}, {"num_experts": 4}, "expert_gate_w [8, 256] must be [4, 256]"),
    "no experts": ({}, {"num_experts": 0}, "num_experts must be 1.."),
    "zero epsilon": ({}, {"epsilon": 0.0}, "epsilon must be positive"),
    "rank 4 weight": ({"shared_w1": np.zeros((1, 1, 64, 256), np.float32)}, {}, "rank above 3"),
}


@pytest.mark.parametrize("name", list(MOE_MALFORMED))
def test_moe_kernel_refuses_malformed_inputs_in_one_line(name):
    changes, attribute_changes, message = MOE_MALFORMED[name]
    feeds, attributes, _ = moe_case(64, 0.3, seed=7)
    with pytest.raises(NativeKernelError) as refusal:
        call_moe({**feeds, **changes}, {**attributes, **attribute_changes})
    assert message in str(refusal.value) and "\n" not in str(refusal.value), str(refusal.value)


def pack_moe(feeds: dict[str, np.ndarray], attributes: dict) -> native.HybridMoeWeights:
    return native.HybridMoeWeights([feeds[name] for name in hybrid_moe.WEIGHTS], **attributes)


@pytest.mark.parametrize("routed_share", [0.0, 0.3, 1.0])
def test_moe_packed_weights_give_the_values_of_the_call(routed_share):
    feeds, attributes, moe = moe_case(1024, routed_share, seed=11)
    packed = pack_moe(feeds, attributes)
    got = packed(feeds["x"], feeds["routed"], threads=2)
    np.testing.assert_array_equal(got, call_moe(feeds, attributes))
    assert_close(got, _function_body(hybrid_moe, attributes, feeds, [TensorProto.FLOAT])[0], atol=1e-4, what="function body")
    with torch.no_grad():
        assert_close(got, moe(torch.from_numpy(feeds["x"]), torch.from_numpy(feeds["routed"])).numpy(), atol=1e-4, what="module")


def test_moe_packed_weight_sets_keep_their_own_values():
    """Two weight sets packed in one process each give their own results, call after call; the
    packing is a copy: changing the arrays afterwards changes nothing."""
    first, attributes, _ = moe_case(256, 0.5, seed=12)
    second, _, _ = moe_case(256, 0.5, seed=13)
    second = {**second, "x": first["x"], "routed": first["routed"]}
    expected = [call_moe(feeds, attributes) for feeds in (first, second)]
    packed = [pack_moe(feeds, attributes) for feeds in (first, second)]
    for feeds in (first, second):
        feeds["experts_w1"][:] = 0.0
        feeds["shared_w3"][:] = 0.0
    for _ in range(2):
        for weights, wanted in zip(packed, expected):
            np.testing.assert_array_equal(weights(first["x"], first["routed"]), wanted)
    assert not np.allclose(expected[0], expected[1])


MOE_PACKED_MALFORMED = {
    "x of another width": ({"x": np.zeros((64, 128), np.float32)}, "x [64, 128] must be [N, C] with N 1..16777216 and C = 256"),
    "rank 3 x": ({"x": np.zeros((1, 64, 256), np.float32)}, "x must have rank 2"),
    "routed token twice": ({"routed": np.array([3, 5, 3], np.int64)}, "routed token 3 is listed twice"),
    "routed token beyond x": ({"routed": np.array([64], np.int64)}, "routed token 64 is outside 0..63"),
    "more routed than tokens": ({"routed": np.arange(65, dtype=np.int64) % 64}, "at most N = 64"),
    "int32 routed": ({"routed": np.array([3], np.int32)}, "int64"),
}


@pytest.mark.parametrize("name", list(MOE_PACKED_MALFORMED))
def test_moe_packed_weights_refuse_malformed_inputs_in_one_line(name):
    changes, message = MOE_PACKED_MALFORMED[name]
    feeds, attributes, _ = moe_case(64, 0.3, seed=7)
    feeds = {**feeds, **changes}
    with pytest.raises(NativeKernelError) as refusal:
        pack_moe(feeds, attributes)(feeds["x"], feeds["routed"])
    assert message in str(refusal.value) and "\n" not in str(refusal.value), str(refusal.value)


@pytest.mark.parametrize(("changes", "attribute_changes", "message"), [
    ({"experts_w1": np.zeros((7, 64, 256), np.float32)}, {}, "experts_w1 [7, 64, 256] must be [8, 64, 256]"),
    ({"shared_w1": np.zeros((64, 2000), np.float32)}, {}, "shared_w1 [64, 2000] must be [H, C] with C 1..1024"),
    ({}, {"num_experts": 4}, "expert_gate_w [8, 256] must be [4, 256]"),
    ({}, {"epsilon": float("nan")}, "epsilon must be positive"),
    ({"shared_w1": np.zeros((1, 1, 64, 256), np.float32)}, {}, "rank above 3"),
])
def test_moe_packing_refuses_malformed_weights_in_one_line(changes, attribute_changes, message):
    feeds, attributes, _ = moe_case(64, 0.3, seed=7)
    with pytest.raises(NativeKernelError) as refusal:
        pack_moe({**feeds, **changes}, {**attributes, **attribute_changes})
    assert message in str(refusal.value) and "\n" not in str(refusal.value), str(refusal.value)


def test_moe_packed_call_refuses_an_unknown_handle_in_one_line():
    """The C entry serves only handles it handed out and has not freed."""
    import ctypes

    feeds, attributes, _ = moe_case(64, 0.3, seed=7)
    packed = pack_moe(feeds, attributes)
    handle = packed._handle
    packed.__del__()
    error = ctypes.create_string_buffer(native.ERROR_SIZE)
    shape = np.asarray(feeds["x"].shape, np.int64)
    y = np.empty_like(feeds["x"])
    for stale in (handle, None, 12345):
        status = native.kernels().i2f_hybrid_moe_packed(stale, shape.ctypes.data, feeds["x"].ctypes.data, 0, None, y.ctypes.data,
                                                        y.size, 1, error, native.ERROR_SIZE)
        assert status == 1 and error.value.decode() == "HybridMoE: the packed weights' handle is unknown (freed, or never packed)"
    assert native.kernels().i2f_hybrid_moe_free(handle, error, native.ERROR_SIZE) == 1


def test_openvino_packs_each_nodes_constant_weights_for_itself(tmp_path):
    """The OpenVINO op keeps each node's packed constant weights: two models with different
    weights compiled in one process give their own results, call after call."""
    from i2f_deploy.runtime.openvino_backend import OpenVinoRunner

    require_native()
    first, attributes, _ = moe_case(256, 0.5, seed=14)
    second, _, _ = moe_case(256, 0.5, seed=15)
    second = {**second, "x": first["x"], "routed": first["routed"]}
    runners = []
    for index, feeds in enumerate((first, second)):
        model = _one_node_model(hybrid_moe, attributes, feeds, [TensorProto.FLOAT])
        del model.graph.input[2:]  # the weights as the graph's constants, as in the decoder
        model.graph.initializer.extend(numpy_helper.from_array(feeds[name], name) for name in hybrid_moe.WEIGHTS)
        onnx.save(model, tmp_path / f"moe_{index}.onnx")
        runners.append(OpenVinoRunner(tmp_path / f"moe_{index}.onnx", threads=1, kernels="native"))
    tokens = {"x": first["x"], "routed": first["routed"]}
    for _ in range(2):
        for runner, feeds in zip(runners, (first, second)):
            assert_close(next(iter(runner.run(tokens).values())), call_moe(feeds, attributes), atol=1e-6)


def _neck_cases() -> dict[str, tuple]:
    bsq_feeds, bsq_attributes, _, _ = bsq_case(1024, 300, seed=8)
    attention_feeds, attention_attributes, _, _ = attention_case(32, _routed_tokens(32, "some"), seed=8)
    moe_feeds, moe_attributes, _ = moe_case(1024, 0.3, seed=9)
    label = routing_maps(512)["random 0"]
    return {
        "TokenRouting": (token_routing, ROUTING, {"ref_label": label}, [TensorProto.INT64] * 3),
        "BSQAttention": (bsq_attention, bsq_attributes, bsq_feeds, [TensorProto.FLOAT]),
        "FullAttention": (full_attention, attention_attributes, attention_feeds, [TensorProto.FLOAT]),
        "HybridMoE": (hybrid_moe, moe_attributes, moe_feeds, [TensorProto.FLOAT]),
    }


NECK_OPS = ["TokenRouting", "BSQAttention", "FullAttention", "HybridMoE"]


@pytest.mark.parametrize("kernels", ["native", "function-body"])
@pytest.mark.parametrize("op", NECK_OPS)
def test_openvino_runs_the_neck_ops_on_either_path(tmp_path, op, kernels):
    require_native()
    module, attributes, feeds, types = _neck_cases()[op]
    got = _openvino_runs(tmp_path, module, attributes, feeds, types, kernels)
    for a, b in zip(got, _function_body(module, attributes, feeds, types)):
        if a.dtype.kind == "f":
            assert_close(a, b, atol=1e-4, what=op)
        else:
            np.testing.assert_array_equal(a, b, err_msg=op)


@pytest.mark.parametrize("op", NECK_OPS)
def test_openvino_native_neck_ops_do_not_depend_on_the_thread_count(tmp_path, op):
    """Each output value is written by one task, the per-code sums in key order on one thread:
    one thread and two give the same bits, and the same as the single-threaded C entry."""
    require_native()
    module, attributes, feeds, types = _neck_cases()[op]
    one, two = (_openvino_runs(tmp_path, module, attributes, feeds, types, "native", threads) for threads in (1, 2))
    direct = {"TokenRouting": lambda: native.token_routing(feeds["ref_label"], **attributes),
              "BSQAttention": lambda: [call_bsq(feeds, attributes)],
              "FullAttention": lambda: [call_attention(feeds, attributes)],
              "HybridMoE": lambda: [call_moe(feeds, attributes)]}[op]()
    for a, b, c in zip(one, two, direct):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_openvino_refuses_a_malformed_routed_list_with_nan(tmp_path):
    """OpenVINO's CPU plugin drops an extension's errors, so HybridMoE refuses a routed list
    with a repeated token by filling y with NaN; the next valid call is served."""
    from i2f_deploy.runtime.openvino_backend import OpenVinoRunner

    require_native()
    feeds, attributes, _ = moe_case(256, 0.3, seed=10)
    path = tmp_path / "moe.onnx"
    onnx.save(_one_node_model(hybrid_moe, attributes, feeds, [TensorProto.FLOAT]), path)
    runner = OpenVinoRunner(path, threads=1, kernels="native")
    expected = call_moe(feeds, attributes)
    assert_close(next(iter(runner.run(feeds).values())), expected, atol=1e-6)
    refused = next(iter(runner.run({**feeds, "routed": np.array([3, 5, 3], np.int64)}).values()))
    assert refused.shape == (256, 256) and np.isnan(refused).all()
    assert_close(next(iter(runner.run(feeds).values())), expected, atol=1e-6)


# --- DPE's PromptConvolution -----------------------------------------------------------------

def prompt_case(labels: np.ndarray, seed: int) -> tuple[dict[str, np.ndarray], torch.nn.Module]:
    """The op's inputs for ``labels`` with a random table and random DPE weights, and the stack."""
    from i2f_deploy.model.neck import PromptConv
    from i2f_deploy.model.random_weights import randomize_weights

    stack = PromptConv(dims=(32, 64, 128, 256), strides=(2, 2, 2, 2))
    randomize_weights(stack, seed=seed)
    table = torch.randn(5, 5, generator=torch.Generator().manual_seed(seed))
    tensors = (table, *prompt_convolution.weight_inputs(stack))
    feeds = {"labels": np.ascontiguousarray(labels, np.uint8), **dict(zip(prompt_convolution.INPUTS[1:],
                                                                          (t.detach().numpy().copy() for t in tensors)))}
    return feeds, stack


def call_prompt(feeds: dict[str, np.ndarray], threads: int = 1) -> np.ndarray:
    return native.prompt_convolution(feeds["labels"], feeds["table"], [feeds[name] for name in prompt_convolution.WEIGHTS],
                                     threads=threads)


def _discs(size: tuple[int, int], background: int, discs: list[tuple[int, int, int, int]]) -> np.ndarray:
    """A map of ``background`` with discs (row, column, radius, value) drawn in order."""
    yy, xx = np.mgrid[: size[0], : size[1]]
    label = np.full(size, background, np.uint8)
    for y, x, radius, value in discs:
        label[(yy - y) ** 2 + (xx - x) ** 2 <= radius**2] = value
    return label


def first_click(size: int) -> np.ndarray:
    """All "unknown" but a positive click's disc at the centre: the whole image is the DPE box."""
    return _discs((size, size), 2, [(size // 2, size // 2, 5, 4)])


def medium_click() -> np.ndarray:
    """A later click's crop: "possibly foreground" inside "possibly background" and two clicks."""
    return _discs((432, 432), 1, [(216, 216, 200, 3), (150, 260, 5, 4), (300, 120, 5, 4)])


def _check_prompt(feeds: dict[str, np.ndarray], stack: torch.nn.Module, threads: int = 1, body: bool = True,
                  got: np.ndarray | None = None, what: str = "") -> np.ndarray:
    """The kernel (its C entry, or ``got`` when run elsewhere) against the module and the function
    body, to 1e-4 of the output's magnitude."""
    got = call_prompt(feeds, threads) if got is None else got
    with torch.no_grad():
        eager = stack.on_labels(torch.from_numpy(feeds["labels"]), torch.from_numpy(feeds["table"])).numpy()
    assert got.shape == eager.shape, what
    atol = 1e-4 * max(1.0, float(np.abs(eager).max()))
    of = f"{what}: " if what else ""
    assert_close(got, eager, atol=atol, what=of + "module")
    if body:
        assert_close(got, _function_body(prompt_convolution, {}, feeds, [TensorProto.FLOAT])[0], atol=atol, what=of + "function body")
    return got


@pytest.mark.parametrize("size", [512, 1024, pytest.param(2048, marks=pytest.mark.slow)])
def test_prompt_kernel_on_the_first_click(size):
    feeds, stack = prompt_case(first_click(size), seed=size)
    _check_prompt(feeds, stack, threads=2)


def _blocks(shape: tuple[int, int], cell: int, seed: int) -> np.ndarray:
    """Random values in cells of ``cell`` pixels: constant patches with edges at every offset."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 5, ((shape[0] + cell - 1) // cell, (shape[1] + cell - 1) // cell), dtype=np.uint8)
    return np.repeat(np.repeat(cells, cell, axis=0), cell, axis=1)[: shape[0], : shape[1]]


PROMPT_MAPS = {
    "medium click": medium_click,
    "one value everywhere": lambda: np.full((320, 256), 3, np.uint8),
    "random labels": lambda: np.random.default_rng(1).integers(0, 5, (200, 152), dtype=np.uint8),
    "patches of 13 pixels": lambda: _blocks((208, 240), 13, seed=2),
    "patches of 40 pixels": lambda: _blocks((256, 256), 40, seed=3),
}


@pytest.mark.parametrize("name", list(PROMPT_MAPS))
def test_prompt_kernel_matches_the_function_body_and_the_module(name):
    feeds, stack = prompt_case(PROMPT_MAPS[name](), seed=4)
    _check_prompt(feeds, stack)


@pytest.mark.parametrize("shape", [(1, 1), (1, 17), (17, 1), (17, 33), (16, 16), (31, 47), (33, 65)])
@pytest.mark.parametrize("kind", ["random", "constant", "patches"])
def test_prompt_kernel_on_odd_and_tiny_sizes(shape, kind):
    """Sides that are no multiple of 16 pad at the bottom and right at every layer, as Conv does."""
    labels = {"random": np.random.default_rng(5).integers(0, 5, shape, dtype=np.uint8),
              "constant": np.full(shape, 4, np.uint8),
              "patches": _blocks(shape, 5, seed=6)}[kind]
    feeds, stack = prompt_case(labels, seed=7)
    _check_prompt(feeds, stack)


@pytest.mark.parametrize("box", [(0, 0, 160, 96), (352, 64, 512, 240), (96, 400, 304, 512), (0, 176, 48, 512),
                                 (256, 256, 272, 272), (0, 0, 512, 512)],
                         ids=["top-left", "right border", "bottom border", "left border", "one token", "whole image"])
def test_prompt_kernel_on_the_decoder_crops(box):
    """The crops of a 512 prompt map inside DPE boxes (left, top, right, bottom), as the decoder
    hands them to the op: at each border, a single token, the whole image."""
    from support.prompt_maps import random_prompt_map

    label = random_prompt_map(np.random.default_rng(8)).numpy()[0, 0]
    label[250:262, 258:266] = 4  # inside the one-token box too
    left, top, right, bottom = box
    feeds, stack = prompt_case(label[top:bottom, left:right], seed=9)
    _check_prompt(feeds, stack)


def test_prompt_kernel_of_other_widths():
    """Seven values embedded in three channels and layer widths that are no multiple of the vector
    lanes or of a panel of packed weights, against the function body (the module is fixed at five)."""
    rng = np.random.default_rng(11)
    channels = (3, 7, 33, 20, 45)
    feeds = {"labels": _blocks((45, 70), 6, seed=11) + rng.integers(0, 2, (45, 70), dtype=np.uint8) * 2,
             "table": rng.standard_normal((7, 3)).astype(np.float32)}
    for layer, (c_in, c_out) in enumerate(pairwise(channels), start=1):
        feeds[f"weight{layer}"] = (rng.standard_normal((c_out, c_in, 3, 3)) / (3 * c_in**0.5)).astype(np.float32)
        feeds[f"bias{layer}"] = (0.1 * rng.standard_normal(c_out)).astype(np.float32)
    body = _function_body(prompt_convolution, {}, feeds, [TensorProto.FLOAT])[0]
    assert body.shape == (1, 45, 3, 5)
    assert_close(call_prompt(feeds), body, atol=1e-4 * max(1.0, float(np.abs(body).max())))


_PROMPT_IN_ANOTHER_PROCESS = """
import sys
import numpy as np
from i2f_deploy.custom_ops import native, prompt_convolution
feeds = dict(np.load(sys.argv[1]))
np.save(sys.argv[2], native.prompt_convolution(feeds["labels"], feeds["table"], [feeds[n] for n in prompt_convolution.WEIGHTS]))
"""


def test_prompt_kernel_portable_version_gives_the_values_of_the_default(tmp_path):
    """Where the CPU has AVX-512 the block products run a third version of their loop;
    I2F_NATIVE_PORTABLE (read once per process) makes a process run the portable one instead."""
    feeds, _ = prompt_case(medium_click()[:200, :264], seed=10)
    np.savez(tmp_path / "case.npz", **feeds)
    environment = {**os.environ, "I2F_NATIVE_PORTABLE": "1"}
    subprocess.run([sys.executable, "-c", _PROMPT_IN_ANOTHER_PROCESS, str(tmp_path / "case.npz"), str(tmp_path / "y.npy")],
                   env=environment, check=True)
    assert_close(np.load(tmp_path / "y.npy"), call_prompt(feeds), atol=1e-5, what="portable version")


def _prompt_malformed() -> dict[str, tuple[dict, str]]:
    weights = prompt_case(np.zeros((1, 1), np.uint8), seed=0)[0]
    return {
        "float labels": ({"labels": np.zeros((32, 32), np.float32)}, "uint8"),
        "rank 3 labels": ({"labels": np.zeros((1, 32, 32), np.uint8)}, "labels must have rank 2"),
        "no rows": ({"labels": np.zeros((0, 32), np.uint8)}, "labels [0, 32] must have sides from 1 to 32768"),
        "too wide": ({"labels": np.zeros((1, (1 << 15) + 1), np.uint8)}, "labels [1, 32769] must have sides from 1 to 32768"),
        "label beyond the table": ({"labels": np.pad(np.full((1, 1), 5, np.uint8), ((3, 28), (7, 24)))},
                                   "label 5 at (3, 7) is outside 0..4 (the table's rows)"),
        "float64 table": ({"table": np.zeros((5, 5), np.float64)}, "float32"),
        "empty table": ({"table": np.zeros((0, 5), np.float32)}, "table [0, 5] must be [V, E] with V from 1 to 255"),
        "too many values": ({"table": np.zeros((256, 5), np.float32)}, "table [256, 5] must be [V, E]"),
        "table of another width": ({"table": np.zeros((5, 4), np.float32)}, "weight1 [32, 5, 3, 3] must be [C1, 4, 3, 3]"),
        "weights not chaining": ({"weight3": np.zeros((128, 63, 3, 3), np.float32)}, "weight3 [128, 63, 3, 3] must be [C3, 64, 3, 3]"),
        "5x5 kernel": ({"weight2": np.zeros((64, 32, 5, 5), np.float32)}, "weight2 [64, 32, 5, 5] must be [C2, 32, 3, 3]"),
        "rank 3 weight": ({"weight4": np.zeros((256, 128, 9), np.float32)}, "weight4 must have rank 4"),
        "bias of another size": ({"bias3": np.zeros(127, np.float32)}, "bias3 has 127 values, expected 128"),
        "float64 bias": ({"bias1": weights["bias1"].astype(np.float64)}, "float32"),
    }


@pytest.mark.parametrize("name", list(_prompt_malformed()))
def test_prompt_kernel_refuses_malformed_inputs_in_one_line(name):
    changes, message = _prompt_malformed()[name]
    feeds, _ = prompt_case(first_click(32), seed=0)
    with pytest.raises(NativeKernelError) as refusal:
        call_prompt({**feeds, **changes})
    assert message in str(refusal.value) and "\n" not in str(refusal.value), str(refusal.value)


def test_prompt_kernel_refuses_a_weight_list_or_an_output_buffer_that_does_not_fit():
    feeds, _ = prompt_case(first_click(32), seed=0)
    weights = [feeds[name] for name in prompt_convolution.WEIGHTS]
    with pytest.raises(NativeKernelError, match=r"^PromptConvolution: expected 8 weights \(weight1, bias1, ... bias4\), got 7$"):
        native.prompt_convolution(feeds["labels"], feeds["table"], weights[:7])
    with pytest.raises(NativeKernelError, match=r"an output buffer must be .* of shape \[1, 256, 2, 2\], got float32 \[1, 256, 4\]"):
        native.prompt_convolution(feeds["labels"], feeds["table"], weights, allocate=lambda shape, dtype: np.empty((1, 256, 4), dtype))


_PROMPT_OUT_OF_MEMORY = """
import resource
import numpy as np
from i2f_deploy.custom_ops import native
channels = (5, 32, 64, 128, 256)
weights = [array for c_in, c_out in zip(channels[:-1], channels[1:])
           for array in (np.zeros((c_out, c_in, 3, 3), np.float32), np.zeros(c_out, np.float32))]
labels = np.random.default_rng(0).integers(0, 5, (4096, 4096), dtype=np.uint8)
with open("/proc/self/status") as status:
    size = next(int(line.split()[1]) for line in status if line.startswith("VmSize:")) << 10
resource.setrlimit(resource.RLIMIT_AS, (size + (256 << 20),) * 2)  # layer 1's activations alone take 512 MB
try:
    native.prompt_convolution(labels, np.zeros((5, 5), np.float32), weights)
except native.NativeKernelError as error:
    print(error)
"""


@pytest.mark.skipif("asan" in os.environ.get("LD_PRELOAD", ""), reason="the sanitizers' allocator aborts where the kernel's throws")
def test_prompt_kernel_refuses_a_map_beyond_the_memory_in_one_line():
    """Random labels convolve every position: a map whose activations do not fit is refused, not a crash."""
    run = subprocess.run([sys.executable, "-c", _PROMPT_OUT_OF_MEMORY], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "PromptConvolution: out of memory for labels [4096, 4096]"


def test_prompt_c_entry_refuses_missing_tensors_and_a_wrong_output_size_untouched():
    """Called directly: a null pointer or an output of another size is refused, the output untouched."""
    import ctypes

    feeds, _ = prompt_case(first_click(32), seed=0)
    filters = [feeds[f"weight{layer}"] for layer in range(1, 5)]
    biases = [feeds[f"bias{layer}"] for layer in range(1, 5)]
    shapes = [np.asarray(feeds[name].shape, np.int64) for name in ("labels", "table")]
    weight_shapes = np.asarray([w.shape for w in filters], np.int64)
    bias_sizes = np.asarray([b.size for b in biases], np.int64)
    weight_data = (ctypes.c_void_p * 4)(*(w.ctypes.data for w in filters))
    bias_data = (ctypes.c_void_p * 4)(*(b.ctypes.data for b in biases))
    missing_bias = (ctypes.c_void_p * 4)(*(b.ctypes.data for b in biases[:3]), None)
    output = np.full(256 * 2 * 2, 7.0, np.float32)
    error = ctypes.create_string_buffer(native.ERROR_SIZE)

    def call(labels: int | None, biases_pointer: object, size: int) -> str:
        status = native.kernels().i2f_prompt_convolution(
            shapes[0].ctypes.data, labels, shapes[1].ctypes.data, feeds["table"].ctypes.data, weight_shapes.ctypes.data,
            ctypes.cast(weight_data, ctypes.c_void_p), bias_sizes.ctypes.data, ctypes.cast(biases_pointer, ctypes.c_void_p),
            output.ctypes.data, size, 1, error, native.ERROR_SIZE)
        assert status == 1
        return error.value.decode()

    assert call(None, bias_data, output.size) == "PromptConvolution: a tensor is missing"
    assert call(feeds["labels"].ctypes.data, missing_bias, output.size) == "PromptConvolution: weight4 or bias4 is missing"
    assert call(feeds["labels"].ctypes.data, bias_data, output.size - 1) == "PromptConvolution: output holds 1023 values, expected 1024"
    assert (output == 7.0).all()


def _prompt_model(feeds: dict[str, np.ndarray], labels: list[int | str | None], constant: bool) -> onnx.ModelProto:
    """A ``PromptConvolution`` node whose labels have the sides ``labels`` (None or a name: dynamic);
    the table and the weights constants as in the decoder, or inputs of dynamic sides."""
    model = _one_node_model(prompt_convolution, {}, feeds, [TensorProto.FLOAT])
    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("labels", TensorProto.UINT8, labels))
    if constant:
        model.graph.initializer.extend(numpy_helper.from_array(feeds[name], name) for name in prompt_convolution.INPUTS[1:])
        del model.graph.input[1:]
    return model


def _prompt_runner(tmp_path, feeds: dict[str, np.ndarray], kernels: str, threads: int = 2, constant: bool = False):
    from i2f_deploy.runtime.openvino_backend import OpenVinoRunner

    path = tmp_path / f"prompt_{kernels}_{threads}.onnx"
    onnx.save(_prompt_model(feeds, [None, None], constant), path)
    runner = OpenVinoRunner(path, threads=threads, kernels=kernels)
    assert runner.kernels == kernels
    return runner


def _run_prompt(runner, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return next(iter(runner.run({name: feeds[name] for name in runner.input_names}).values()))


def openvino_prompt_maps() -> dict[str, np.ndarray]:
    """One value everywhere, a decoder crop of mixed values, random values, odd and tiny sizes."""
    from support.prompt_maps import random_prompt_map

    rng = np.random.default_rng(12)
    return {
        "all zero": np.zeros((96, 128), np.uint8),
        "box crop of mixed values": random_prompt_map(np.random.default_rng(8)).numpy()[0, 0, 176:512, 0:48],
        "medium click": medium_click(),
        "random values": rng.integers(0, 5, (200, 152), dtype=np.uint8),
        "random values, 37 x 53": rng.integers(0, 5, (37, 53), dtype=np.uint8),
        "patches, 37 x 53": _blocks((37, 53), 5, seed=13),
        "one pixel": np.full((1, 1), 3, np.uint8),
    }


@pytest.mark.parametrize("kernels", ["native", "function-body"])
def test_openvino_runs_the_prompt_op_on_either_path(tmp_path, kernels):
    """One model of dynamic sides serves every map, against the module and the function body."""
    require_native()
    maps = openvino_prompt_maps()
    assert len(np.unique(maps["box crop of mixed values"])) > 1
    feeds, stack = prompt_case(np.zeros((1, 1), np.uint8), seed=14)
    runner = _prompt_runner(tmp_path, feeds, kernels, constant=True)
    for name, labels in maps.items():
        case = {**feeds, "labels": labels}
        _check_prompt(case, stack, got=_run_prompt(runner, case), what=name)


@pytest.mark.parametrize("constant", [True, False], ids=["constant weights", "weight inputs"])
def test_openvino_native_prompt_op_does_not_depend_on_the_thread_count(tmp_path, constant):
    """Each output value is written by one task: one thread and two give the same bits, and the
    same as the single-threaded C entry."""
    require_native()
    feeds, _ = prompt_case(np.zeros((1, 1), np.uint8), seed=15)
    one, two = (_prompt_runner(tmp_path, feeds, "native", threads, constant) for threads in (1, 2))
    maps = openvino_prompt_maps()
    for name in ("box crop of mixed values", "medium click", "random values", "random values, 37 x 53"):
        case = {**feeds, "labels": maps[name]}
        expected = call_prompt(case)
        np.testing.assert_array_equal(_run_prompt(one, case), expected, err_msg=name)
        np.testing.assert_array_equal(_run_prompt(two, case), expected, err_msg=name)


@pytest.mark.parametrize("value", [5, 255])
def test_openvino_refuses_a_label_beyond_the_table_with_nan(tmp_path, value):
    """OpenVINO's CPU plugin drops an extension's errors, so a label that is no row of the table
    fills the output with NaN; the next valid call is served."""
    require_native()
    feeds, _ = prompt_case(first_click(64), seed=16)
    runner = _prompt_runner(tmp_path, feeds, "native", constant=True)
    expected = call_prompt(feeds)
    np.testing.assert_array_equal(_run_prompt(runner, feeds), expected)
    labels = feeds["labels"].copy()
    labels[40, 21] = value
    refused = _run_prompt(runner, {**feeds, "labels": labels})
    assert refused.shape == (1, 256, 4, 4) and np.isnan(refused).all()
    np.testing.assert_array_equal(_run_prompt(runner, feeds), expected)


MALFORMED_PROMPT_SHAPES = ["table of another width", "too many values", "weights not chaining", "5x5 kernel", "bias of another size"]


@pytest.mark.parametrize("name", MALFORMED_PROMPT_SHAPES)
def test_openvino_refuses_malformed_prompt_weights_when_run(tmp_path, name):
    """Weights fed as inputs: the shape inference of the call refuses them with the kernel's
    reason (an error of the call, not a crash); the next valid call is served."""
    require_native()
    changes, message = _prompt_malformed()[name]
    feeds, _ = prompt_case(first_click(64), seed=17)
    runner = _prompt_runner(tmp_path, feeds, "native")
    with pytest.raises(RuntimeError, match=re.escape(message)):
        _run_prompt(runner, {**feeds, **changes})
    np.testing.assert_array_equal(_run_prompt(runner, feeds), call_prompt(feeds))


@pytest.mark.parametrize("name", MALFORMED_PROMPT_SHAPES)
def test_openvino_refuses_malformed_constant_prompt_weights_when_read(tmp_path, name):
    """Constant weights (the decoder's) that do not fit are refused when the model is read."""
    from i2f_deploy.runtime.openvino_backend import OpenVinoRunner

    require_native()
    changes, message = _prompt_malformed()[name]
    feeds, _ = prompt_case(first_click(64), seed=17)
    path = tmp_path / "prompt.onnx"
    onnx.save(_prompt_model({**feeds, **changes}, [None, None], constant=True), path)
    with pytest.raises(RuntimeError, match=re.escape(message)):
        OpenVinoRunner(path, threads=1, kernels="native")


@pytest.mark.parametrize("labels, constant, output", [
    ([37, 53], True, "[1,256,3,4]"),
    ([512, 512], True, "[1,256,32,32]"),
    ([1, 17], True, "[1,256,1,2]"),
    ([None, None], True, "[1,256,1..,1..]"),
    (["h", 53], True, "[1,256,1..,4]"),
    ([37, 53], False, "[1,?,3,4]"),
    ([None, None], False, "[1,?,1..,1..]"),
])
def test_openvino_prompt_op_infers_the_output_shape(tmp_path, labels, constant, output):
    """Each layer halves a side, rounding up; C4 from weight4; a dynamic side has one position at
    least, as the function body's convolutions infer."""
    import openvino as ov
    from i2f_deploy.custom_ops.openvino import register

    require_native()
    feeds, _ = prompt_case(np.zeros((1, 1), np.uint8), seed=18)
    path = tmp_path / "prompt.onnx"
    onnx.save(_prompt_model(feeds, labels, constant), path)
    shapes = {}
    for native_op in (True, False):
        core = ov.Core()
        register(core, str(path), native=native_op)
        shapes[native_op] = core.read_model(str(path)).output(0).get_partial_shape()
    assert str(shapes[True]) == output
    assert shapes[False].relaxes(shapes[True])  # the same, or (dynamic weights) the body bounds static sides only


def test_openvino_prompt_op_infers_the_grid_of_bounded_sides_and_refuses_too_long_ones(tmp_path):
    import openvino as ov
    from i2f_deploy.custom_ops.openvino import register

    require_native()
    feeds, _ = prompt_case(np.zeros((1, 1), np.uint8), seed=18)
    path = tmp_path / "prompt.onnx"
    onnx.save(_prompt_model(feeds, [None, None], constant=True), path)
    core = ov.Core()
    register(core, str(path), native=True)
    model = core.read_model(str(path))
    model.reshape({"labels": ov.PartialShape([ov.Dimension(1, 512), ov.Dimension(37)])})
    assert str(model.output(0).get_partial_shape()) == "[1,256,1..32,3]"
    model.reshape({"labels": ov.PartialShape([ov.Dimension(20, 100), ov.Dimension(0, 16)])})
    assert str(model.output(0).get_partial_shape()) == "[1,256,2..7,1]"
    with pytest.raises(RuntimeError, match=re.escape("PromptConvolution: labels [1, 40000] must have sides from 1 to 32768")):
        model.reshape({"labels": ov.PartialShape([1, 40000])})


def _calls_on(threads: int) -> dict[str, list[np.ndarray]]:
    """Each kernel's C entry on ``threads`` threads, on inputs large enough to split."""
    x, edge_map = random_inputs(64, 24, 20, seed=7)
    stage = random_stage(64, seed=7)
    dlu = stage_feeds(stage, x, edge_map, (0, 0, 20, 24))
    bsq_feeds, bsq_attributes, _, _ = bsq_case(4096, 1500, seed=3)
    attention_feeds, attention_attributes, _, _ = attention_case(64, _routed_tokens(64, "some"), seed=3)
    moe_feeds, moe_attributes, _ = moe_case(1024, 0.3, seed=3)
    label = routing_maps(1024)["unknown patch"]
    prompt_feeds = [prompt_case(labels, seed=3)[0] for labels in (medium_click(), PROMPT_MAPS["random labels"]())]
    return {
        "DLUUpsample": [native.dlu_upsample(*(dlu[name] for name in dlu_upsample.INPUTS), 16, threads=threads)],
        "TokenRouting": list(native.token_routing(label, **ROUTING, threads=threads)),
        "BSQAttention": [native.bsq_attention(*(bsq_feeds[name] for name in bsq_attention.INPUTS), **bsq_attributes, threads=threads)],
        "FullAttention": [call_attention(attention_feeds, attention_attributes, threads=threads)],
        "HybridMoE": [native.hybrid_moe(moe_feeds["x"], moe_feeds["routed"], [moe_feeds[name] for name in hybrid_moe.WEIGHTS],
                                        **moe_attributes, threads=threads)],
        "PromptConvolution": [call_prompt(feeds, threads=threads) for feeds in prompt_feeds],
    }


def test_c_entries_give_the_same_results_on_one_and_two_threads():
    """The pool splits each kernel's work by the same blocks as one thread does: equal bits."""
    one, two, three = _calls_on(1), _calls_on(2), _calls_on(3)
    for op in one:
        for a, b, c in zip(one[op], two[op], three[op]):
            np.testing.assert_array_equal(a, b, err_msg=op)
            np.testing.assert_array_equal(a, c, err_msg=op)


@pytest.mark.parametrize("threads", [0, -1, 1 << 20])
def test_c_entries_refuse_a_bad_thread_count_in_one_line(threads):
    label = routing_maps(512)["unknown patch"]
    with pytest.raises(NativeKernelError, match=rf"TokenRouting: threads must be from 1 to 1024, got {threads}$") as refusal:
        native.token_routing(label, **ROUTING, threads=threads)
    assert "\n" not in str(refusal.value)
    x, edge_map = random_inputs(4, 6, 5, seed=1)
    feeds = stage_feeds(random_stage(4, seed=1), x, edge_map, (0, 0, 5, 6))
    with pytest.raises(NativeKernelError, match="DLUUpsample: threads must be from 1 to 1024"):
        native.dlu_upsample(*(feeds[name] for name in dlu_upsample.INPUTS), 1, threads=threads)


# --- preprocess's upsampling of the logits to the image ----------------------------------------

UPSAMPLE_GEOMETRIES = {  # height, width, target size
    "photo 1536x1024 at 1024": (1024, 1536, 1024),
    "portrait 700x1300 at 1024": (1300, 700, 1024),
    "tiny 3x5 at 512": (5, 3, 512),
    "square of the target size": (1024, 1024, 1024),
    "larger than the target (downscaled)": (2000, 3000, 1024),
    "photo 3072x2048 at 2048": (2048, 3072, 2048),
}


def _hard_logits(size: int, seed: int) -> np.ndarray:
    """Logits of mixed sign at every scale: near 0 (down to subnormals), ordinary and large, some exactly 0."""
    rng = np.random.default_rng(seed)
    scale = rng.choice([1e-38, 1e-20, 1e-3, 1.0, 30.0, 1e15, 1e30], size=(size, size))
    logits = rng.standard_normal((size, size)) * scale
    logits[rng.random((size, size)) < 0.01] = 0.0
    return logits.astype(np.float32)[None, None]


def _upsampled(monkeypatch: pytest.MonkeyPatch, path: str, logits: np.ndarray,
               geometry: preprocess.Geometry) -> tuple[np.ndarray, np.ndarray]:
    monkeypatch.setattr(preprocess, "UPSAMPLING", path)
    return preprocess.logits_to_image(logits, geometry), preprocess.logits_to_mask(logits, geometry)


def _bits(image: np.ndarray) -> np.ndarray:
    """The float32 values' bits (tells -0 from 0, and compares NaNs)."""
    return image.view(np.uint32)


def test_preprocess_upsamples_natively_when_the_library_loads():
    assert preprocess.UPSAMPLING == "native"


@pytest.mark.parametrize("name", UPSAMPLE_GEOMETRIES)
def test_upsampling_kernel_gives_numpys_bits(monkeypatch, name):
    height, width, target = UPSAMPLE_GEOMETRIES[name]
    geometry = preprocess.geometry_for(height, width, target)
    logits = _hard_logits(target, seed=height + width)
    image, mask = _upsampled(monkeypatch, "native", logits, geometry)
    numpy_image, numpy_mask = _upsampled(monkeypatch, "numpy", logits, geometry)
    assert image.shape == mask.shape == (height, width) and image.dtype == np.float32 and mask.dtype == bool
    assert np.array_equal(_bits(image), _bits(numpy_image))
    assert np.array_equal(mask, numpy_mask)
    assert 0.2 < mask.mean() < 0.8


def test_upsampling_kernel_rounds_each_product_and_sum(monkeypatch):
    """Where a fused multiply-add (one rounding for a product and the sum) changes the last bit of
    many pixels, the kernel still gives NumPy's bits: it does not contract."""
    height, width, target = UPSAMPLE_GEOMETRIES["photo 1536x1024 at 1024"]
    geometry = preprocess.geometry_for(height, width, target)
    logits = (np.random.default_rng(5).standard_normal((target, target)) * 10).astype(np.float32)
    image, _ = _upsampled(monkeypatch, "native", logits, geometry)
    numpy_image, _ = _upsampled(monkeypatch, "numpy", logits, geometry)
    side = geometry.padded_side
    fused = np.concatenate(list(preprocess._resize_bands(logits, target, target, side, side, height, width, 64,
                                                         preprocess._combine_fma)))
    assert (_bits(fused) != _bits(numpy_image)).mean() > 0.05
    assert np.array_equal(_bits(image), _bits(numpy_image))


def _random_taps(rng: np.random.Generator, inputs: int, outputs: int) -> tuple[np.ndarray, ...]:
    """Indices in any order (repeated, decreasing) and weights of any sign."""
    index0, index1 = (rng.integers(0, inputs, outputs) for _ in range(2))
    weight0, weight1 = (rng.standard_normal(outputs).astype(np.float32) for _ in range(2))
    return index0, index1, weight0, weight1


def test_upsampling_kernel_on_taps_in_any_order_and_threads():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((37, 53)).astype(np.float32)
    rows, cols = _random_taps(rng, 37, 101), _random_taps(rng, 53, 67)
    # the first rows read inputs (0, 1), (0, 2), (3, 0), (3, 3): a row's second tap is new while its first is held
    for taps, index in zip(rows[:2], ([0, 0, 3, 3], [1, 2, 0, 3])):
        taps[:4] = index
    r0, r1, wr0, wr1 = rows
    c0, c1, wc0, wc1 = cols
    t = x[:, c0] * wc0 + x[:, c1] * wc1
    expected = t[r0] * wr0[:, None] + t[r1] * wr1[:, None]
    for threads in (1, 2, 3):
        assert np.array_equal(_bits(native.bilinear_upsample(x, rows, cols, threads=threads)), _bits(expected))
        assert np.array_equal(native.bilinear_upsample(x, rows, cols, mask=True, threads=threads), expected > 0)


def _upsample_case() -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(4)
    return rng.standard_normal((7, 5)).astype(np.float32), list(_random_taps(rng, 7, 11)), list(_random_taps(rng, 5, 9))


def _row_index_beyond(x: np.ndarray, rows: list[np.ndarray], cols: list[np.ndarray]) -> None:
    rows[1][3] = 7


def _column_index_below(x: np.ndarray, rows: list[np.ndarray], cols: list[np.ndarray]) -> None:
    cols[0][8] = -1


UPSAMPLE_MALFORMED = {
    "row index beyond the input": (_row_index_beyond, r"BilinearUpsample: row tap 3 reads input 7, outside 0 .. 6$"),
    "negative column index": (_column_index_below, r"BilinearUpsample: column tap 8 reads input -1, outside 0 .. 4$"),
}


@pytest.mark.parametrize("name", UPSAMPLE_MALFORMED)
def test_upsampling_kernel_refuses_taps_outside_the_input_in_one_line(name):
    x, rows, cols = _upsample_case()
    change, message = UPSAMPLE_MALFORMED[name]
    change(x, rows, cols)
    for mask in (False, True):
        with pytest.raises(NativeKernelError, match=message):
            native.bilinear_upsample(x, rows, cols, mask=mask)


def test_upsampling_wrapper_refuses_malformed_arguments_in_one_line():
    x, rows, cols = _upsample_case()
    with pytest.raises(NativeKernelError, match=r"BilinearUpsample: x must have rank 2, got shape \[1, 7, 5\]$"):
        native.bilinear_upsample(x[None], rows, cols)
    with pytest.raises(NativeKernelError, match=r"BilinearUpsample: the column taps differ in length: \[9, 9, 9, 8\]$"):
        native.bilinear_upsample(x, rows, [*cols[:3], cols[3][:8]])
    with pytest.raises(NativeKernelError, match=r"expected a numpy array of float32, got float64$"):
        native.bilinear_upsample(x, [*rows[:2], rows[2].astype(np.float64), rows[3]], cols)
    with pytest.raises(NativeKernelError, match="BilinearUpsample: the row taps must be"):
        native.bilinear_upsample(x, rows[:3], cols)  # type: ignore[arg-type]
    with pytest.raises(NativeKernelError, match=r"BilinearUpsample: row outputs must be from 1 to 1048576, got 0$"):
        native.bilinear_upsample(x, [a[:0] for a in rows], cols)
    with pytest.raises(NativeKernelError, match=r"BilinearUpsample: threads must be from 1 to 1024, got 0$"):
        native.bilinear_upsample(x, rows, cols, threads=0)


def test_upsampling_c_entries_refuse_missing_data_and_a_wrong_output_size_untouched():
    """Called directly: a null pointer, an input of another shape or an output of another size is
    refused, the output untouched."""
    import ctypes

    x, rows, cols = _upsample_case()
    error = ctypes.create_string_buffer(native.ERROR_SIZE)

    def call(entry: str, shape: tuple[int, int], data: int | None, row_weight1: int | None, output: np.ndarray, size: int) -> str:
        status = getattr(native.kernels(), entry)(
            np.asarray(shape, np.int64).ctypes.data, data, 11, *(a.ctypes.data for a in rows[:3]), row_weight1,
            9, *(a.ctypes.data for a in cols), output.ctypes.data, size, 1, error, native.ERROR_SIZE)
        assert status == 1
        return error.value.decode()

    for entry, output in (("i2f_bilinear_upsample", np.full(99, 7.0, np.float32)),
                          ("i2f_bilinear_upsample_mask", np.full(99, 7, np.uint8))):
        data, weight = x.ctypes.data, rows[3].ctypes.data
        assert call(entry, (7, 5), None, weight, output, 99) == "BilinearUpsample: the input is missing"
        assert call(entry, (7, 5), data, None, output, 99) == "BilinearUpsample: the row taps are missing"
        assert call(entry, (0, 5), data, weight, output, 99) == (
            "BilinearUpsample: the input must be [h, w] with sides from 1 to 1048576, got [0, 5]")
        assert call(entry, (7, 5), data, weight, output, 98) == "BilinearUpsample: the output holds 98 values, expected 99"
        assert (output == 7).all()
