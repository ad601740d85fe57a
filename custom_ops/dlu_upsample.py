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
from i2f_deploy.custom_ops import DOMAIN, VERSION
from i2f_deploy.custom_ops.function_body import FLOAT, INT64, attribute, attribute_ref, function_body
from onnxscript import OpBuilder, ir
from torch import Tensor

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
    filters = phase_filters()

    def body(op: OpBuilder, mixed: ir.Value, edge_map: ir.Value, edge_term: ir.Value, edge_weight: ir.Value,
             box: ir.Value) -> ir.Value:  # fmt: skip
        channels = attribute(op, "channels")
        repeats = op.Concat(op.Unsqueeze(channels, [0]), [1, 1, 1], axis=0)

        def per_channel(kernel: np.ndarray, name: str) -> ir.Value:
            """The kernel of one channel repeated for every channel (constant once ``channels`` is known)."""
            return op.Tile(ir.tensor(kernel.astype(np.float32), name=name), repeats)

        def grouped_conv(x: ir.Value, kernel: ir.Value) -> ir.Value:
            return op.Conv(x, kernel, group=attribute_ref("group", "channels"))

        rows, columns = per_channel(row_kernel(filters), "rows"), per_channel(column_kernel(filters), "columns")
        rows_first, rows_last = (per_channel(row_kernel(beyond_only(filters, side)), f"rows_{side}") for side in SIDES)
        columns_first, columns_last = (per_channel(column_kernel(beyond_only(filters, side)), f"columns_{side}") for side in SIDES)

        def narrow(x: ir.Value, axis: int, start: ir.Value | int, length: ir.Value | int) -> ir.Value:
            """``length`` entries of ``x`` along ``axis`` from ``start``."""
            start = op.Unsqueeze(start, [0]) if isinstance(start, ir.Value) else [start]
            return op.Slice(x, start, op.Add(start, length), [axis])

        def shuffle(x: ir.Value) -> ir.Value:
            return op.DepthToSpace(x, blocksize=2, mode="CRD")

        mixed_shape = op.Shape(mixed)
        height = op.Sub(op.Gather(mixed_shape, 2), 2 * HALF_WINDOW)
        width = op.Sub(op.Gather(mixed_shape, 3), 2 * HALF_WINDOW)
        last_row, last_col = op.Sub(height, 1), op.Sub(width, 1)

        by_rows = grouped_conv(mixed, rows)
        phases = grouped_conv(by_rows, columns)
        # the reads one high-resolution pixel beyond the crop, as ring strips: rows (phase_y 0 of
        # the first low-resolution row, 1 of the last), then columns (with their own row ends)
        top = narrow(shuffle(grouped_conv(narrow(by_rows, 2, 0, WINDOW), columns_first)), 2, 0, 1)
        bottom = narrow(shuffle(grouped_conv(narrow(by_rows, 2, last_row, WINDOW), columns_last)), 2, 1, 1)

        def columns_within_crop(strip: ir.Value) -> ir.Value:
            """Column filter of a thin [.., h+4, 1] strip, its reads beyond the crop removed."""
            head = grouped_conv(narrow(strip, 2, 0, WINDOW), columns_first)
            tail = grouped_conv(narrow(strip, 2, last_row, WINDOW), columns_last)
            rows_after = op.Unsqueeze(last_row, [0])
            head = op.Pad(head, op.Concat([0, 0, 0, 0, 0, 0], rows_after, [0], axis=0))
            tail = op.Pad(tail, op.Concat([0, 0], rows_after, [0, 0, 0, 0, 0], axis=0))
            return op.Sub(op.Sub(grouped_conv(strip, columns), head), tail)

        left = columns_within_crop(grouped_conv(narrow(mixed, 3, 0, WINDOW), rows_first))
        right = columns_within_crop(grouped_conv(narrow(mixed, 3, last_col, WINDOW), rows_last))
        left = narrow(shuffle(left), 3, 0, 1)
        right = narrow(shuffle(right), 3, 1, 1)

        # the per-image edge term on the crop, less what image pixels just outside it gave the ring
        term_shape = op.Shape(edge_term)
        grid_h, grid_w = op.Gather(term_shape, 2), op.Gather(term_shape, 3)
        box_left, box_top, box_right, box_bottom = (op.Gather(box, i) for i in range(4))
        inside = [op.Greater(box_left, 0), op.Greater(box_top, 0), op.Less(box_right, grid_w), op.Less(box_bottom, grid_h)]
        inside = [op.Cast(flag, to=FLOAT) for flag in inside]
        edge_shape = op.Shape(edge_map)
        edge_h, edge_w = op.Gather(edge_shape, 2), op.Gather(edge_shape, 3)
        left2, top2, right2, bottom2 = (op.Mul(v, 2) for v in (box_left, box_top, box_right, box_bottom))
        first_col = op.Max(op.Sub(left2, 1), 0)
        end_col = op.Min(op.Add(right2, 1), edge_w)
        pad_left = op.Sub(first_col, op.Sub(left2, 1))
        pad_right = op.Sub(op.Add(right2, 1), end_col)
        beyond = op.Concat([0, 0, 0], op.Unsqueeze(pad_left, [0]), [0, 0, 0], op.Unsqueeze(pad_right, [0]), axis=0)

        def weight_part(axis: int, start: int) -> ir.Value:
            return op.Slice(edge_weight, [start], [start + 1], [axis])

        def edge_row(row: ir.Value, weight: ir.Value, flag: ir.Value) -> ir.Value:
            line = narrow(narrow(edge_map, 2, row, 1), 3, first_col, op.Sub(end_col, first_col))
            return op.Mul(op.Conv(op.Pad(line, beyond), weight), flag)

        above = edge_row(op.Max(op.Sub(top2, 1), 0), weight_part(2, 0), inside[1])
        below = edge_row(op.Min(bottom2, op.Sub(edge_h, 1)), weight_part(2, 2), inside[3])
        # both columns in one gather, then the crop's rows (a row band first would copy every column)
        right_col = op.Min(right2, op.Sub(edge_w, 1))
        side_columns = op.Concat(op.Unsqueeze(first_col, [0]), op.Unsqueeze(right_col, [0]), axis=0)
        sides = narrow(op.Gather(edge_map, side_columns, axis=3), 2, top2, op.Sub(bottom2, top2))
        edge_left = op.Conv(narrow(sides, 3, 0, 1), weight_part(3, 0), pads=[1, 0, 1, 0])
        edge_right = op.Conv(narrow(sides, 3, 1, 1), weight_part(3, 2), pads=[1, 0, 1, 0])
        edge_left, edge_right = op.Mul(edge_left, inside[0]), op.Mul(edge_right, inside[2])

        term = narrow(narrow(edge_term, 2, box_top, height), 3, box_left, width)
        y = shuffle(op.Add(phases, term))
        ring_rows = op.Neg(op.Concat(op.Add(top, above), op.Add(bottom, below), axis=2))
        ring_columns = op.Neg(op.Concat(op.Add(left, edge_left), op.Add(right, edge_right), axis=3))

        # two scatter-adds on the ring (no duplicate index within either: the output is at least 2x2)
        y_shape = op.Shape(y)
        out_h, out_w = op.Gather(y_shape, 2), op.Gather(y_shape, 3)
        channel_ids = op.Range(0, channels, 1)
        ends_h = op.Mul([0, 1], op.Sub(out_h, 1))
        ends_w = op.Mul([0, 1], op.Sub(out_w, 1))
        row_ids = op.Range(0, out_h, 1)

        def index_grid(*axes: ir.Value) -> ir.Value:
            """int64 [len(axis0), ..., 1 + len(axes)]: (0, axis0 id, axis1 id, ...) for every combination."""
            count = len(axes)
            expanded = [op.Reshape(ids, [-1 if axis == position else 1 for axis in range(count)]) for position, ids in enumerate(axes)]
            full = op.Shape(op.Add(expanded[0], op.Add(*expanded[1:]) if count > 2 else expanded[1]))
            grid_shape = op.Concat(full, [1], axis=0)
            columns = [op.Expand(op.Unsqueeze(e, [-1]), grid_shape) for e in expanded]
            batch = op.Expand(ir.tensor(np.zeros([1] * (count + 1), np.int64), name=f"batch_{count}"), grid_shape)
            return op.Concat(batch, *columns, axis=-1)

        y = op.ScatterND(y, index_grid(channel_ids, ends_h), op.Squeeze(ring_rows, [0]), reduction="add")
        return op.ScatterND(y, index_grid(channel_ids, row_ids, ends_w), op.Squeeze(ring_columns, [0]), reduction="add")

    types = {name: INT64 if name == "box" else FLOAT for name in INPUTS}
    return function_body(OP_TYPE, types, OUTPUTS, body, __doc__ or "", ATTRIBUTES)


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
