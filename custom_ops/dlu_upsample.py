"""``ai.inter2former::DLUUpsample`` (version 2): the x2 upsampling of one DLU stage, from its
mixed tap maps to the stage's output before the activation.

Inputs
    mixed        float [1, 9C, h+4, w+4]  the crop's tap maps at low resolution: channel
                                          ``9c + 3ky + kx`` is output channel c's 3x3 tap
                                          (ky, kx) applied to the standardised crop as a 1x1
                                          mixing, replicate-padded by 2
    edge_map     float [1, E, 2H, 2W]     the stage's whole edge map (H x W: the stage's input grid)
    edge_term    float [1, 4C, H, W]      per image: ``conv3x3(edge_map) + bias`` as the phases
                                          of its 2x2 pixel blocks (channel ``4c + 2py + px``)
    edge_weight  float [C, E, 3, 3]       the stage's 3x3 convolution weight
    box          int64 [4]                the crop (left, top, right, bottom) on the H x W grid;
                                          right - left = w, bottom - top = h
Attributes
    channels     int                      C
Outputs
    y            float [1, C, 2h, 2w]
Semantics
    ``y = conv3x3(bicubic2x(g) + crop(edge_map)) + bias`` on the crop, with the convolution
    reading zeros beyond the crop, where the tap maps are ``mixed`` (``W_t . g`` per tap t) and
    ``bicubic2x`` is PyTorch's (half-pixel centres, A = -0.75, reads clamped to the crop, which
    the replicate padding supplies). Computed as: every output pixel's nine taps read the bicubic
    of their tap map at the shifted position; taps that read beyond the crop are dropped; the
    per-image ``edge_term`` is added, minus what the image pixels just outside the crop gave it.

The function body computes it at low resolution: separable polyphase filters (rows then
columns, the three taps of one axis folded into one 5-tap filter per output phase), a pixel
shuffle, and corrections on the output's border ring only.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import onnx
import torch
from onnx import helper
from torch import Tensor

from i2f_deploy.custom_ops import DOMAIN, VERSION
from i2f_deploy.custom_ops._builder import FunctionBuilder

OP_TYPE = "DLUUpsample"
INPUTS = ("mixed", "edge_map", "edge_term", "edge_weight", "box")
OUTPUTS = ("y",)
ATTRIBUTES = ("channels",)  # referenced by the function body, so one body serves every stage

CUBIC_A = -0.75
EVEN_DISTANCES = (1.75, 0.75, 0.25, 1.25)  # of inputs j-2..j+1 from high-resolution sample 2j
ODD_DISTANCES = (1.25, 0.25, 0.75, 1.75)  # of inputs j-1..j+2 from sample 2j+1
WINDOW = 5  # low-resolution inputs j-2..j+2 that the three taps of one output phase read
HALF_WINDOW = WINDOW // 2
PHASES = 2
SHIFTS = (-1, 0, 1)  # a 3x3 tap's offset along one axis, at the high resolution
TAPS = 9
Side = Literal["first", "last"]  # the crop's first or last row (column) along one axis
SIDES: tuple[Side, ...] = get_args(Side)


def cubic_weight(distance: float) -> float:
    """Keys' cubic convolution kernel with A = -0.75, as PyTorch and OpenCV use it."""
    x = abs(distance)
    if x <= 1:
        return ((CUBIC_A + 2) * x - (CUBIC_A + 3)) * x * x + 1
    if x < 2:
        return ((CUBIC_A * x - 5 * CUBIC_A) * x + 8 * CUBIC_A) * x - 4 * CUBIC_A
    return 0.0


def phase_filters() -> np.ndarray:
    """[phase, shift, 5] float64: the weights of inputs j-2..j+2 in high-resolution sample
    ``2j + phase + shift`` of a bicubic x2 (PyTorch's: half-pixel centres, A = -0.75)."""
    filters = np.zeros((PHASES, len(SHIFTS), WINDOW))
    for phase in range(PHASES):
        for index, shift in enumerate(SHIFTS):
            sample = phase + shift  # high-resolution offset from 2j
            source = sample // 2  # low-resolution j' of that sample, relative to j
            if sample % 2 == 0:  # even sample 2j' reads j'-2..j'+1
                first, distances = source - 2, EVEN_DISTANCES
            else:  # odd sample 2j'+1 reads j'-1..j'+2
                first, distances = source - 1, ODD_DISTANCES
            for offset, distance in enumerate(distances):
                filters[phase, index, first + offset + HALF_WINDOW] = cubic_weight(distance)
    return filters


def beyond_only(filters: np.ndarray, side: Side) -> np.ndarray:
    """The part of ``filters`` that reads the high-resolution sample just beyond the crop's
    ``side`` (the crop's first or last low-resolution position along the filtered axis)."""
    kept = np.zeros_like(filters)
    if side == "first":
        kept[0, 0] = filters[0, 0]  # sample 2*0 + 0 - 1 = -1
    elif side == "last":
        kept[1, 2] = filters[1, 2]  # sample 2*(n-1) + 1 + 1 = 2n
    else:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    return kept


def row_kernel(filters: np.ndarray) -> np.ndarray:
    """One channel's row filter [6, 9, 1, 5]: input tap (ky, kx), output (ky, phase_x); taps of
    another ky read nothing (one group per channel keeps the group count an attribute's)."""
    kernel = np.zeros((3, PHASES, 3, 3, WINDOW))
    for ky in range(3):
        for kx in range(3):
            for phase in range(PHASES):
                kernel[ky, phase, ky, kx] = filters[phase, kx]
    return kernel.reshape(3 * PHASES, TAPS, 1, WINDOW)


def column_kernel(filters: np.ndarray) -> np.ndarray:
    """One channel's column filter [4, 6, 5, 1]: input (ky, phase_x), output (phase_y, phase_x),
    the order a pixel shuffle interleaves."""
    kernel = np.zeros((PHASES, PHASES, 3 * PHASES, WINDOW))
    for phase_y in range(PHASES):
        for phase_x in range(PHASES):
            for ky in range(3):
                kernel[phase_y, phase_x, ky * PHASES + phase_x] = filters[phase_y, ky]
    return kernel.reshape(PHASES * PHASES, 3 * PHASES, WINDOW, 1)


def function_proto() -> onnx.FunctionProto:
    """Standard-op definition; ``channels`` is a function attribute (the grouped convolutions'
    ``group``), so the four stages share this one body."""
    b = FunctionBuilder(OP_TYPE, INPUTS, __doc__ or "")
    filters = phase_filters()

    group = helper.make_attribute_ref("group", onnx.AttributeProto.INT, ref_attr_name="channels")
    channels = b.op("Constant", refs=[helper.make_attribute_ref("value_int", onnx.AttributeProto.INT, ref_attr_name="channels")])
    repeats = b.op("Concat", b.op("Unsqueeze", channels, b.const([0])), b.const([1, 1, 1]), axis=0)

    def per_channel(kernel: np.ndarray) -> str:
        """The kernel of one channel repeated for every channel (constant once ``channels`` is known)."""
        return b.op("Tile", b.const(kernel, np.float32), repeats)

    def grouped_conv(x: str, kernel: str) -> str:
        return b.op("Conv", x, kernel, refs=[group])

    rows, columns = per_channel(row_kernel(filters)), per_channel(column_kernel(filters))
    rows_first, rows_last = (per_channel(row_kernel(beyond_only(filters, side))) for side in SIDES)
    columns_first, columns_last = (per_channel(column_kernel(beyond_only(filters, side))) for side in SIDES)

    def scalar(tensor: str, index: int) -> str:
        return b.op("Gather", tensor, b.const(index))

    def narrow(x: str, axis: int, start: str, length: str | int) -> str:
        end = b.op("Add", start, b.const(length) if isinstance(length, int) else length)
        unsq = b.const([0])
        return b.op("Slice", x, b.op("Unsqueeze", start, unsq), b.op("Unsqueeze", end, unsq), b.const([axis]))

    def shuffle(x: str) -> str:
        return b.op("DepthToSpace", x, blocksize=2, mode="CRD")

    zero, one = b.const(0), b.const(1)
    mixed_shape = b.op("Shape", "mixed")
    height = b.op("Sub", scalar(mixed_shape, 2), b.const(2 * HALF_WINDOW))
    width = b.op("Sub", scalar(mixed_shape, 3), b.const(2 * HALF_WINDOW))
    last_row, last_col = b.op("Sub", height, one), b.op("Sub", width, one)

    by_rows = grouped_conv("mixed", rows)
    phases = grouped_conv(by_rows, columns)
    # the reads one high-resolution pixel beyond the crop, as ring strips: rows (phase_y 0 of the
    # first low-resolution row, 1 of the last), then columns (with their own row ends)
    top = narrow(shuffle(grouped_conv(narrow(by_rows, 2, zero, WINDOW), columns_first)), 2, zero, 1)
    bottom = narrow(shuffle(grouped_conv(narrow(by_rows, 2, last_row, WINDOW), columns_last)), 2, one, 1)

    def columns_within_crop(strip: str) -> str:
        """Column filter of a thin [.., h+4, 1] strip, its reads beyond the crop removed."""
        head = grouped_conv(narrow(strip, 2, zero, WINDOW), columns_first)
        tail = grouped_conv(narrow(strip, 2, last_row, WINDOW), columns_last)
        head = b.op("Pad", head, b.op("Concat", b.const([0, 0, 0, 0, 0, 0]), b.op("Unsqueeze", last_row, zero), b.const([0]), axis=0))
        tail = b.op("Pad", tail, b.op("Concat", b.const([0, 0]), b.op("Unsqueeze", last_row, zero), b.const([0, 0, 0, 0, 0]), axis=0))
        return b.op("Sub", b.op("Sub", grouped_conv(strip, columns), head), tail)

    left = columns_within_crop(grouped_conv(narrow("mixed", 3, zero, WINDOW), rows_first))
    right = columns_within_crop(grouped_conv(narrow("mixed", 3, last_col, WINDOW), rows_last))
    left = narrow(shuffle(left), 3, zero, 1)
    right = narrow(shuffle(right), 3, one, 1)

    # the per-image edge term on the crop, less what image pixels just outside it gave the ring
    term_shape = b.op("Shape", "edge_term")
    grid_h, grid_w = scalar(term_shape, 2), scalar(term_shape, 3)
    box_left, box_top, box_right, box_bottom = (scalar("box", i) for i in range(4))
    inside = [
        b.op("Greater", box_left, zero), b.op("Greater", box_top, zero),
        b.op("Less", box_right, grid_w), b.op("Less", box_bottom, grid_h),
    ]  # fmt: skip
    inside = [b.op("Cast", flag, to=onnx.TensorProto.FLOAT) for flag in inside]
    two = b.const(2)
    edge_shape = b.op("Shape", "edge_map")
    edge_h, edge_w = scalar(edge_shape, 2), scalar(edge_shape, 3)
    left2, top2, right2, bottom2 = (b.op("Mul", v, two) for v in (box_left, box_top, box_right, box_bottom))
    first_col = b.op("Max", b.op("Sub", left2, one), zero)
    end_col = b.op("Min", b.op("Add", right2, one), edge_w)
    pad_left = b.op("Sub", first_col, b.op("Sub", left2, one))
    pad_right = b.op("Sub", b.op("Add", right2, one), end_col)
    beyond = b.op("Concat", *[b.op("Unsqueeze", v, zero) for v in (zero, zero, zero, pad_left, zero, zero, zero, pad_right)], axis=0)

    def weight_part(axis: int, start: int) -> str:
        return b.op("Slice", "edge_weight", b.const([start]), b.const([start + 1]), b.const([axis]))

    def edge_row(row: str, weight: str, flag: str) -> str:
        line = narrow(narrow("edge_map", 2, row, 1), 3, first_col, b.op("Sub", end_col, first_col))
        return b.op("Mul", b.op("Conv", b.op("Pad", line, beyond), weight), flag)

    above = edge_row(b.op("Max", b.op("Sub", top2, one), zero), weight_part(2, 0), inside[1])
    below = edge_row(b.op("Min", bottom2, b.op("Sub", edge_h, one)), weight_part(2, 2), inside[3])
    # both columns in one gather, then the crop's rows (a row band first would copy every column)
    right_col = b.op("Min", right2, b.op("Sub", edge_w, one))
    side_columns = b.op("Concat", b.op("Unsqueeze", first_col, zero), b.op("Unsqueeze", right_col, zero), axis=0)
    sides = narrow(b.op("Gather", "edge_map", side_columns, axis=3), 2, top2, b.op("Sub", bottom2, top2))
    edge_left = b.op("Conv", narrow(sides, 3, zero, 1), weight_part(3, 0), pads=[1, 0, 1, 0])
    edge_right = b.op("Conv", narrow(sides, 3, one, 1), weight_part(3, 2), pads=[1, 0, 1, 0])
    edge_left, edge_right = b.op("Mul", edge_left, inside[0]), b.op("Mul", edge_right, inside[2])

    term = narrow(narrow("edge_term", 2, box_top, height), 3, box_left, width)
    y = shuffle(b.op("Add", phases, term))
    ring_rows = b.op("Neg", b.op("Concat", b.op("Add", top, above), b.op("Add", bottom, below), axis=2))
    ring_columns = b.op("Neg", b.op("Concat", b.op("Add", left, edge_left), b.op("Add", right, edge_right), axis=3))

    # two scatter-adds on the ring (no duplicate index within either: the output is at least 2x2)
    y_shape = b.op("Shape", y)
    out_h, out_w = scalar(y_shape, 2), scalar(y_shape, 3)
    channel_ids = b.op("Range", zero, channels, one)
    ends_h = b.op("Mul", b.const([0, 1]), b.op("Sub", out_h, one))
    ends_w = b.op("Mul", b.const([0, 1]), b.op("Sub", out_w, one))
    row_ids = b.op("Range", zero, out_h, one)

    def index_grid(*axes: str) -> str:
        """int64 [len(axis0), ..., 1 + len(axes)]: (0, axis0 id, axis1 id, ...) for every combination."""
        count = len(axes)
        expanded = []
        for position, ids in enumerate(axes):
            shape = [1] * count
            shape[position] = -1
            expanded.append(b.op("Reshape", ids, b.const(shape)))
        full = b.op("Shape", b.op("Add", expanded[0], b.op("Add", *expanded[1:]) if count > 2 else expanded[1]))
        columns = [b.op("Expand", b.op("Unsqueeze", e, b.const([-1])), b.op("Concat", full, one_dim, axis=0)) for e in expanded]
        batch = b.op("Expand", b.const(np.zeros([1] * (count + 1), np.int64)), b.op("Concat", full, one_dim, axis=0))
        return b.op("Concat", batch, *columns, axis=-1)

    one_dim, one_dim_zero = b.const([1]), b.const([0])
    y = b.op("ScatterND", y, index_grid(channel_ids, ends_h), b.op("Squeeze", ring_rows, one_dim_zero), reduction="add")
    y = b.op("ScatterND", y, index_grid(channel_ids, row_ids, ends_w), b.op("Squeeze", ring_columns, one_dim_zero), reduction="add")
    return b.build({"y": y}, ATTRIBUTES)


def torch_op(mixed: Tensor, edge_map: Tensor, edge_term: Tensor, box: Tensor, module: torch.nn.Module) -> Tensor:
    """Eager: the module's own computation (``module.upsample_mixed``); under ONNX export: one
    ``DLUUpsample`` node."""
    if not torch.onnx.is_in_onnx_export():
        return module.upsample_mixed(mixed, edge_map, edge_term, box)
    channels = module.channels
    height, width = mixed.shape[-2] - 2 * HALF_WINDOW, mixed.shape[-1] - 2 * HALF_WINDOW
    inputs = (mixed, edge_map, edge_term, module.edge_weight, box)
    return torch.onnx.ops.symbolic(
        f"{DOMAIN}::{OP_TYPE}", inputs, {"channels": channels}, dtype=mixed.dtype,
        shape=(1, channels, 2 * height, 2 * width), version=VERSION,
    )  # fmt: skip
