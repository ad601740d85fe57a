"""The per-image encoder graph: preprocessed image -> image embeddings and four edge maps."""

from __future__ import annotations

import copy
import math

import onnx
import torch
from torch import Tensor, nn

from i2f_deploy.contract import EDGE_CONVS, EDGE_MAPS, ENCODER_INPUTS, ENCODER_OUTPUTS
from i2f_deploy.export.dlu import EdgeTerms
from i2f_deploy.export.onnx_files import trace_to_onnx
from i2f_deploy.export.stable_norm import stabilise_group_norms
from i2f_deploy.model.inter2former import Inter2Former

INPUT_NAMES = ENCODER_INPUTS
NUMERICS = "portable"  # the edge detector arithmetic the graph implements (recorded in the manifest)


def atan2_for_export(y: Tensor, x: Tensor) -> Tensor:
    """``torch.atan2`` from Atan, Div and Where, signed zeros included.

    The exporter's own decomposition returns NaN at (0, 0), which flat image regions and the
    padding hit, and which then spreads through every edge map.
    """
    x_zero, y_zero = x == 0, y == 0
    x_negative = (x < 0) | (x_zero & (1.0 / x < 0))
    y_negative = (y < 0) | (y_zero & (1.0 / y < 0))
    base = torch.atan(y / torch.where(x_zero, torch.ones_like(x), x))
    half_turn = torch.where(y_negative, -math.pi, math.pi)
    off_axis = torch.where(x_negative, base + half_turn, base)
    on_axis = torch.where(y_zero, torch.where(x_negative, half_turn, y), torch.where(y_negative, -math.pi / 2, math.pi / 2))
    return torch.where(x_zero, on_axis, off_axis)


class EncoderGraph(nn.Module):
    def __init__(self, model: Inter2Former) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.edge_detector = copy.deepcopy(model.edge_detector)
        self.edge_detector.use_numerics(NUMERICS)
        self.edge_detector.canny.atan2 = atan2_for_export
        stabilise_group_norms(self.edge_detector)
        self.edge_terms = EdgeTerms(model.decode_head)

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        edge_maps = self.edge_detector(image)
        return (self.backbone(image), *edge_maps, *self.edge_terms(edge_maps))


class EdgeTermGraph(nn.Module):
    """The encoder's derived outputs alone: edge maps -> ``edge_conv_*`` (for callers that hold
    only the five official features)."""

    def __init__(self, model: Inter2Former) -> None:
        super().__init__()
        self.edge_terms = EdgeTerms(model.decode_head)

    def forward(self, *edge_maps: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.edge_terms(list(edge_maps)))


def export_encoder(model: Inter2Former, opset: int) -> onnx.ModelProto:
    size = model.target_size
    example = (torch.zeros(1, 3, size, size),)
    return trace_to_onnx(EncoderGraph(model), example, INPUT_NAMES, ENCODER_OUTPUTS, opset)


def export_edge_terms(model: Inter2Former, edge_maps: list[Tensor], opset: int) -> onnx.ModelProto:
    return trace_to_onnx(EdgeTermGraph(model), tuple(edge_maps), EDGE_MAPS, EDGE_CONVS, opset)
