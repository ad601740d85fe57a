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

import numpy as np
import onnx
import torch
from torch import Tensor

from i2f_deploy.contract import DPE_BOX, NUM_ROUTED, REF_LABEL
from i2f_deploy.custom_ops import DOMAIN, VERSION
from i2f_deploy.custom_ops._builder import FunctionBuilder
from i2f_deploy.prompt_map import POSSIBLY_BACKGROUND, UNKNOWN

OP_TYPE = "TokenRouting"
INPUTS = (REF_LABEL,)
OUTPUTS = ("token_order", NUM_ROUTED, DPE_BOX)


def function_proto(stride: int, kernel_size: int) -> onnx.FunctionProto:
    """Standard-op definition; the body is generated for the attribute values it serves.

    Full-resolution work is on the uint8 map only: equality tests and block maxima per token.
    """
    b = FunctionBuilder(OP_TYPE, INPUTS, __doc__ or "")
    reach = kernel_size // 2
    shape = b.op("Shape", REF_LABEL)
    height = b.op("Gather", shape, b.const(2))
    width = b.op("Gather", shape, b.const(3))
    zero, one, step = b.const(0), b.const(1), b.const(stride)
    plane = b.op("Reshape", REF_LABEL, b.op("Concat", b.op("Unsqueeze", height, zero), b.const([-1]), axis=0))

    def any_set(flags: str, axes: list[int]) -> str:
        return b.op("Greater", b.op("ReduceMax", flags, b.const(axes), keepdims=0), b.const(0, np.uint8))

    prompted = b.op("Cast", b.op("Not", b.op("Equal", plane, b.const(POSSIBLY_BACKGROUND, np.uint8))), to=onnx.TensorProto.UINT8)
    rows, cols = any_set(prompted, [1]), any_set(prompted, [0])

    def extent(flags: str, size: str) -> tuple[str, str]:
        ids = b.op("Range", zero, size, one)
        first = b.op("ReduceMin", b.op("Where", flags, ids, size), keepdims=0)
        last = b.op("ReduceMax", b.op("Where", flags, b.op("Add", ids, one), zero), keepdims=0)
        return first, last

    top, bottom = extent(rows, height)
    left, right = extent(cols, width)
    empty = b.op("Equal", bottom, zero)

    def snap_down(value: str) -> str:
        return b.op("Mul", b.op("Div", value, step), step)

    def snap_up(value: str) -> str:
        return snap_down(b.op("Add", value, b.const(stride - 1)))

    def grown_low(value: str) -> str:
        return b.op("Where", empty, zero, b.op("Max", b.op("Sub", snap_down(value), step), zero))

    def grown_high(value: str, size: str) -> str:
        return b.op("Where", empty, size, b.op("Min", b.op("Add", snap_up(value), step), size))

    left, top = grown_low(left), grown_low(top)
    right, bottom = grown_high(right, width), grown_high(bottom, height)
    box = b.op("Concat", *[b.op("Unsqueeze", v, zero) for v in (left, top, right, bottom)], axis=0)

    def inside(low: str, high: str, size: str) -> str:
        """uint8 [cells]: 1 for the token rows (or columns) the box covers."""
        starts = b.op("Range", zero, size, step)
        flags = b.op("And", b.op("GreaterOrEqual", starts, low), b.op("Less", starts, high))
        return b.op("Cast", flags, to=onnx.TensorProto.UINT8)

    def dilated_cells(near: str, keep: str) -> str:
        """``i2f_deploy.model.routing._dilated_cells`` on a [X, cells * stride] uint8 map."""
        blocks = b.op("Reshape", near, b.const([0, -1, stride]))
        last = b.const([2])
        own = b.op("ReduceMax", blocks, last, keepdims=0)
        tail = b.op("ReduceMax", b.op("Slice", blocks, b.const([stride - reach]), b.const([stride]), last), last, keepdims=0)
        head = b.op("ReduceMax", b.op("Slice", blocks, b.const([0]), b.const([reach]), last), last, keepdims=0)
        own, tail, head = (b.op("Mul", v, keep) for v in (own, tail, head))
        cell_axis = b.const([1])
        from_previous = b.op("Pad", b.op("Slice", tail, b.const([0]), b.const([-1]), cell_axis), b.const([0, 1, 0, 0]))
        from_next = b.op("Pad", b.op("Slice", head, b.const([1]), b.const([2**62]), cell_axis), b.const([0, 0, 0, 1]))
        return b.op("Max", own, from_previous, from_next)

    rows_inside = inside(top, bottom, height)
    cols_inside = inside(left, right, width)
    near_by_row = dilated_cells(plane, cols_inside)
    near = b.op("Transpose", dilated_cells(b.op("Transpose", near_by_row, perm=[1, 0]), rows_inside), perm=[1, 0])
    box_cells = b.op("Mul", b.op("Unsqueeze", rows_inside, one), b.op("Unsqueeze", cols_inside, zero))
    near = b.op("Mul", near, box_cells)
    unknown = b.op("Cast", b.op("Equal", plane, b.const(UNKNOWN, np.uint8)), to=onnx.TensorProto.UINT8)
    cells = b.op("Concat", b.op("Div", b.op("Unsqueeze", height, zero), step), b.const([stride, -1, stride]), axis=0)
    unknown = b.op("ReduceMax", b.op("Reshape", unknown, cells), b.const([1, 3]), keepdims=0)
    routed = b.op("Greater", b.op("Reshape", b.op("Max", near, unknown), b.const([-1])), b.const(0, np.uint8))
    routed_ids = b.op("Reshape", b.op("NonZero", routed), b.const([-1]))
    other_ids = b.op("Reshape", b.op("NonZero", b.op("Not", routed)), b.const([-1]))
    order = b.op("Concat", routed_ids, other_ids, axis=0)
    count = b.op("Squeeze", b.op("Shape", routed_ids))
    return b.build({"token_order": order, NUM_ROUTED: count, DPE_BOX: box})


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
