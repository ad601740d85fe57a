"""The native DLUUpsample kernel against its ONNX function body (ONNX Runtime) and the PyTorch
module it replaces, called directly (C entry point) and inside OpenVINO; malformed inputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper

from i2f_deploy.compare import assert_close
from i2f_deploy.custom_ops import DOMAIN, VERSION, dlu_upsample, native
from i2f_deploy.custom_ops.native import NativeKernelError
from i2f_deploy.export.dlu import FactoredStage
from i2f_deploy.export.stable_norm import standardise
from i2f_deploy.model.head import Upsample2x
from i2f_deploy.model.routing import Box, crop

from support.dlu import BOXES, GRID_H, GRID_W, random_stage
from support.native import require_native


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
        eager = stage.upsample_mixed(*(torch.from_numpy(feeds[n]) for n in ("mixed", "edge_map", "edge_term")), torch.from_numpy(feeds["box"]))
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
