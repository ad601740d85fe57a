"""``ai.inter2former::TokenRouting`` (version 3): the prompt map decides where compute goes.

Inputs
    ref_label  uint8 [1, 1, H, W]   prompt map, values 0..4 (H, W multiples of ``stride``)
Attributes
    stride       int   token size in pixels (16)
    kernel_size  int   uncertainty window (7)
Outputs
    token_order  int64 [N]   every token index (N = H*W/stride^2): routed tokens ascending,
                             then the other tokens ascending
    num_routed   int64 []    how many leading entries of ``token_order`` are routed
    dpe_box      int64 [4]   (left, top, right, bottom) in pixels: the box of pixels that are not
                             "possibly background" (1), snapped outward to ``stride``, grown by
                             one stride and clamped; the whole map when there is no such pixel
Semantics
    A token is routed (full attention, routed expert) when its cell holds an "unknown" (2) pixel,
    or a pixel inside ``dpe_box`` whose ``kernel_size`` window, clipped to the box, holds a
    non-zero label. This is the official uncertainty rule as it evaluates in float32 (see
    ``i2f_deploy.model.routing``). Zero and all tokens routed are both valid results. The window
    must not reach beyond the neighbouring token (``kernel_size // 2 <= stride``).
"""

from __future__ import annotations

import onnx
import torch
from i2f_deploy.custom_ops import DOMAIN, VERSION
from i2f_deploy.custom_ops.function_body import UINT8, function_body
from onnxscript import OpBuilder, ir
from torch import Tensor

from i2f_deploy.contract import DPE_BOX, NUM_ROUTED, REF_LABEL
from i2f_deploy.prompt_map import POSSIBLY_BACKGROUND, UNKNOWN

OP_TYPE = "TokenRouting"
INPUTS = (REF_LABEL,)
OUTPUTS = ("token_order", NUM_ROUTED, DPE_BOX)


def function_proto(stride: int, kernel_size: int) -> onnx.FunctionProto:
    """Standard-op definition; the body is generated for the attribute values it serves.

    Full-resolution work is on the uint8 map only: equality tests and block maxima per token.
    """
    reach = kernel_size // 2

    def body(op: OpBuilder, ref_label: ir.Value) -> tuple[ir.Value, ir.Value, ir.Value]:
        shape = op.Shape(ref_label)
        height, width = op.Gather(shape, 2), op.Gather(shape, 3)
        plane = op.Reshape(ref_label, op.Concat(op.Unsqueeze(height, [0]), [-1], axis=0))

        def any_set(flags: ir.Value, axes: list[int]) -> ir.Value:
            return op.Greater(op.ReduceMax(flags, axes, keepdims=0), 0)

        prompted = op.Cast(op.Not(op.Equal(plane, POSSIBLY_BACKGROUND)), to=UINT8)
        rows, cols = any_set(prompted, [1]), any_set(prompted, [0])

        def extent(flags: ir.Value, size: ir.Value) -> tuple[ir.Value, ir.Value]:
            ids = op.Range(0, size, 1)
            first = op.ReduceMin(op.Where(flags, ids, size), keepdims=0)
            last = op.ReduceMax(op.Where(flags, op.Add(ids, 1), 0), keepdims=0)
            return first, last

        top, bottom = extent(rows, height)
        left, right = extent(cols, width)
        empty = op.Equal(bottom, 0)

        def snap_down(value: ir.Value) -> ir.Value:
            return op.Mul(op.Div(value, stride), stride)

        def snap_up(value: ir.Value) -> ir.Value:
            return snap_down(op.Add(value, stride - 1))

        def grown_low(value: ir.Value) -> ir.Value:
            return op.Where(empty, 0, op.Max(op.Sub(snap_down(value), stride), 0))

        def grown_high(value: ir.Value, size: ir.Value) -> ir.Value:
            return op.Where(empty, size, op.Min(op.Add(snap_up(value), stride), size))

        left, top = grown_low(left), grown_low(top)
        right, bottom = grown_high(right, width), grown_high(bottom, height)
        box = op.Concat(*[op.Unsqueeze(v, [0]) for v in (left, top, right, bottom)], axis=0)

        def inside(low: ir.Value, high: ir.Value, size: ir.Value) -> ir.Value:
            """uint8 [cells]: 1 for the token rows (or columns) the box covers."""
            starts = op.Range(0, size, stride)
            return op.Cast(op.And(op.GreaterOrEqual(starts, low), op.Less(starts, high)), to=UINT8)

        def dilated_cells(near: ir.Value, keep: ir.Value) -> ir.Value:
            """``i2f_deploy.model.routing._dilated_cells`` on a [X, cells * stride] uint8 map."""
            blocks = op.Reshape(near, [0, -1, stride])
            own = op.ReduceMax(blocks, [2], keepdims=0)
            tail = op.ReduceMax(op.Slice(blocks, [stride - reach], [stride], [2]), [2], keepdims=0)
            head = op.ReduceMax(op.Slice(blocks, [0], [reach], [2]), [2], keepdims=0)
            own, tail, head = (op.Mul(v, keep) for v in (own, tail, head))
            from_previous = op.Pad(op.Slice(tail, [0], [-1], [1]), [0, 1, 0, 0])
            from_next = op.Pad(op.Slice(head, [1], [2**62], [1]), [0, 0, 0, 1])
            return op.Max(own, from_previous, from_next)

        rows_inside = inside(top, bottom, height)
        cols_inside = inside(left, right, width)
        near_by_row = dilated_cells(plane, cols_inside)
        near = op.Transpose(dilated_cells(op.Transpose(near_by_row, perm=[1, 0]), rows_inside), perm=[1, 0])
        near = op.Mul(near, op.Mul(op.Unsqueeze(rows_inside, [1]), op.Unsqueeze(cols_inside, [0])))
        unknown = op.Cast(op.Equal(plane, UNKNOWN), to=UINT8)
        cells = op.Concat(op.Div(op.Unsqueeze(height, [0]), stride), [stride, -1, stride], axis=0)
        unknown = op.ReduceMax(op.Reshape(unknown, cells), [1, 3], keepdims=0)
        routed = op.Greater(op.Reshape(op.Max(near, unknown), [-1]), 0)
        routed_ids = op.Reshape(op.NonZero(routed), [-1])
        other_ids = op.Reshape(op.NonZero(op.Not(routed)), [-1])
        order = op.Concat(routed_ids, other_ids, axis=0)
        return order, op.Squeeze(op.Shape(routed_ids)), box

    return function_body(OP_TYPE, {REF_LABEL: UINT8}, OUTPUTS, body, __doc__ or "")


def reference(ref_label: Tensor, stride: int, kernel_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """The op computed with the PyTorch model's router (eager semantics of the node)."""
    from i2f_deploy.model.routing import TokenRouter

    routing = TokenRouter(stride, kernel_size)(ref_label)
    order = torch.cat([routing.routed, routing.others])
    return order, torch.tensor(routing.routed.numel()), routing.box_values


def torch_op(ref_label: Tensor, stride: int, kernel_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Eager: the reference; under ONNX export: one ``TokenRouting`` node."""
    if not torch.onnx.is_in_onnx_export():
        return reference(ref_label, stride, kernel_size)
    num_tokens = (ref_label.shape[-2] // stride) * (ref_label.shape[-1] // stride)
    order, count, box = torch.onnx.ops.symbolic_multi_out(
        f"{DOMAIN}::{OP_TYPE}",
        (ref_label,),
        {"stride": stride, "kernel_size": kernel_size},
        dtypes=(torch.int64, torch.int64, torch.int64),
        shapes=((num_tokens,), (), (4,)),
        version=VERSION,
    )
    return order, count, box
