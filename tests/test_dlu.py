"""The factored DLU stage (per-click work at low resolution, per-image edge term) against the
direct computation ``conv3x3(bicubic2x(GroupNorm(x)) + e) + b`` on crops, eagerly and exported."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from i2f_deploy.custom_ops.dlu_upsample import beyond_only, phase_filters
from i2f_deploy.custom_ops.registry import attach_functions
from support.dlu import BOXES, GRID_H, GRID_W, random_stage
from support.native import require_native
from torch import Tensor, nn

from i2f_deploy.compare import assert_close
from i2f_deploy.export.dlu import FactoredStage
from i2f_deploy.export.onnx_files import trace_to_onnx
from i2f_deploy.model.head import Upsample2x
from i2f_deploy.model.routing import Box, box_from_tensor, crop

pytestmark = pytest.mark.graph


def inputs(channels: int, seed: int) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, channels, GRID_H, GRID_W, generator=generator) * 3 + 1
    edge_map = torch.randn(1, channels, 2 * GRID_H, 2 * GRID_W, generator=generator)
    return x, edge_map


def test_phase_filters_interpolate_constants_and_read_nothing_beyond_the_window():
    filters = torch.from_numpy(phase_filters())
    torch.testing.assert_close(filters.sum(-1), torch.ones(2, 3, dtype=torch.float64))
    signal = torch.randn(1, 1, 1, 11, dtype=torch.float64)
    upsampled = F.interpolate(signal, scale_factor=(1, 2), mode="bicubic", align_corners=False)[0, 0, 0]
    padded = F.pad(signal, (2, 2, 0, 0), mode="replicate")[0, 0, 0]
    for j in range(2, 9):  # away from the borders, every tap of every phase is a window dot product
        for phase in range(2):
            for index, shift in enumerate((-1, 0, 1)):
                expected = upsampled[2 * j + phase + shift]
                assert abs(float(filters[phase, index] @ padded[j : j + 5]) - float(expected)) < 1e-12


def test_beyond_only_refuses_an_unknown_side():
    with pytest.raises(ValueError, match="side must be one of"):
        beyond_only(phase_filters(), "lats")


@pytest.mark.parametrize(
    ("name", "expected"),
    [("whole image", [0, 0, 0, 0]), ("middle", [1, 1, 1, 1]), ("top-left corner", [0, 0, 1, 1]),
     ("bottom-right corner", [1, 1, 0, 0]), ("right border", [1, 1, 0, 1]), ("one token wide", [1, 0, 1, 0])],
)  # fmt: skip
def test_inside_flags_mark_the_sides_with_image_pixels_beyond(name, expected):
    box = Box(*BOXES[name])
    assert box.inside_flags(GRID_H, GRID_W).tolist() == expected
    assert box.scaled(2).inside_flags(2 * GRID_H, 2 * GRID_W).tolist() == expected


@pytest.mark.parametrize("channels", [256, 64, 16, 4])
@pytest.mark.parametrize("name", list(BOXES))
def test_factored_stage_equals_the_direct_stage(channels, name):
    stage = random_stage(channels, seed=channels)
    x_full, edge_map = inputs(channels, seed=channels + 1)
    box = Box(*BOXES[name])
    with torch.no_grad():
        term = F.pixel_unshuffle(stage.conv(edge_map), 2)
        direct = stage(crop(x_full, box), crop(edge_map, box.scaled(2)))
        factored = FactoredStage(stage)(crop(x_full, box), edge_map, term, torch.tensor(BOXES[name]))
    assert factored.shape == direct.shape
    scale = direct.abs().max().item()
    assert (factored - direct).abs().max().item() <= 1e-5 * max(scale, 1.0), name


class BoxedStage(nn.Module):
    """One factored stage on a crop chosen by a box tensor at run time, as in the decoder graph."""

    def __init__(self, stage: Upsample2x) -> None:
        super().__init__()
        self.factored = FactoredStage(stage)

    def forward(self, x: Tensor, edge_map: Tensor, term: Tensor, values: Tensor) -> Tensor:
        box = box_from_tensor(values, x.shape[-2], x.shape[-1])
        return self.factored(crop(x, box), edge_map, term, values)


@pytest.fixture(scope="module")
def exported_stage(tmp_path_factory):
    stage = random_stage(16, seed=3)
    x, edge_map = inputs(16, seed=4)
    with torch.no_grad():
        term = F.pixel_unshuffle(stage.conv(edge_map), 2)
    example = (x, edge_map, term, torch.tensor(BOXES["middle"]))
    proto = trace_to_onnx(BoxedStage(stage), example, ("x", "edge_map", "term", "box"), ("y",), 18)
    attach_functions(proto)
    path = tmp_path_factory.mktemp("stage") / "stage.onnx"
    path.write_bytes(proto.SerializeToString())
    return stage, (x, edge_map, term), path


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino", "openvino-native"])
def test_exported_factored_stage_equals_the_direct_stage_on_every_crop(exported_stage, backend):
    from i2f_deploy.runtime.openvino_backend import OpenVinoRunner
    from i2f_deploy.runtime.ort_backend import OrtRunner

    stage, (x, edge_map, term), path = exported_stage
    if backend == "onnxruntime":
        runner = OrtRunner(path, threads=1)
    elif backend == "openvino-native":
        require_native()
        runner = OpenVinoRunner(path, threads=1, kernels="native")
    else:
        runner = OpenVinoRunner(path, threads=1, kernels="function-body")
    for name, values in BOXES.items():
        box = Box(*values)
        with torch.no_grad():
            direct = stage(crop(x, box), crop(edge_map, box.scaled(2))).numpy()
        feeds = {"x": x.numpy(), "edge_map": edge_map.numpy(), "term": term.numpy(), "box": np.array(values, np.int64)}
        out = runner.run(feeds)["y"]
        assert out.shape == direct.shape, name
        assert_close(out, direct, atol=1e-4, what=name)
