"""``ai.inter2former::TokenRouting`` (version 1): the prompt map decides where compute goes.

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
    ``i2f_deploy.model.routing``). Zero and all tokens routed are both valid results.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from torch import Tensor

from i2f_deploy.custom_ops._builder import FunctionBuilder

OP_TYPE = "TokenRouting"
INPUTS = ("ref_label",)
OUTPUTS = ("token_order", "num_routed", "dpe_box")


def function_proto(domain: str, stride: int, kernel_size: int) -> onnx.FunctionProto:
    """Standard-op definition; the body is generated for the attribute values it serves."""
    b = FunctionBuilder(domain, OP_TYPE, INPUTS, __doc__ or "")
    label = b.op("Cast", "ref_label", to=onnx.TensorProto.FLOAT)
    shape = b.op("Shape", "ref_label")
    height = b.op("Gather", shape, b.const(2))
    width = b.op("Gather", shape, b.const(3))
    zero, one, step = b.const(0), b.const(1), b.const(stride)

    prompted = b.op("Cast", b.op("Not", b.op("Equal", label, b.const(1.0, np.float32))), to=onnx.TensorProto.FLOAT)
    rows = b.op("Greater", b.op("ReduceMax", prompted, b.const([0, 1, 3]), keepdims=0), b.const(0.0, np.float32))
    cols = b.op("Greater", b.op("ReduceMax", prompted, b.const([0, 1, 2]), keepdims=0), b.const(0.0, np.float32))

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

    starts = b.op("Concat", b.op("Unsqueeze", top, zero), b.op("Unsqueeze", left, zero), axis=0)
    ends = b.op("Concat", b.op("Unsqueeze", bottom, zero), b.op("Unsqueeze", right, zero), axis=0)
    crop = b.op("Slice", label, starts, ends, b.const([2, 3]))
    half = kernel_size // 2
    near = b.op("MaxPool", crop, kernel_shape=[kernel_size, kernel_size], pads=[half] * 4, strides=[1, 1])
    near = b.op("Cast", b.op("Greater", near, b.const(0.0, np.float32)), to=onnx.TensorProto.FLOAT)
    before = b.op("Concat", b.const([0, 0]), starts, axis=0)
    after = b.op("Concat", b.const([0, 0]), b.op("Sub", b.op("Slice", shape, b.const([2]), b.const([4])), ends), axis=0)
    pads = b.op("Concat", before, after, axis=0)
    near = b.op("Greater", b.op("Pad", near, pads), b.const(0.0, np.float32))
    uncertain = b.op("Or", near, b.op("Equal", label, b.const(2.0, np.float32)))
    cells = b.op("MaxPool", b.op("Cast", uncertain, to=onnx.TensorProto.FLOAT), kernel_shape=[stride, stride], strides=[stride, stride])
    routed = b.op("Greater", b.op("Reshape", cells, b.const([-1])), b.const(0.0, np.float32))
    routed_ids = b.op("Reshape", b.op("NonZero", routed), b.const([-1]))
    other_ids = b.op("Reshape", b.op("NonZero", b.op("Not", routed)), b.const([-1]))
    order = b.op("Concat", routed_ids, other_ids, axis=0)
    count = b.op("Squeeze", b.op("Shape", routed_ids))
    return b.build({"token_order": order, "num_routed": count, "dpe_box": box})


def reference(ref_label: Tensor, stride: int, kernel_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """The op computed with the PyTorch model's router (eager semantics of the node)."""
    from i2f_deploy.model.routing import TokenRouter

    routing = TokenRouter(stride, kernel_size)(ref_label)
    order = torch.cat([routing.routed, routing.others])
    return order, torch.tensor(routing.routed.numel()), routing.box_values


def torch_op(domain: str, ref_label: Tensor, stride: int, kernel_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Eager: the reference; under ONNX export: one ``TokenRouting`` node."""
    if not torch.onnx.is_in_onnx_export():
        return reference(ref_label, stride, kernel_size)
    num_tokens = (ref_label.shape[-2] // stride) * (ref_label.shape[-1] // stride)
    order, count, box = torch.onnx.ops.symbolic_multi_out(
        f"{domain}::{OP_TYPE}",
        (ref_label,),
        {"stride": stride, "kernel_size": kernel_size},
        dtypes=(torch.int64, torch.int64, torch.int64),
        shapes=((num_tokens,), (), (4,)),
        version=1,
    )
    return order, count, box
