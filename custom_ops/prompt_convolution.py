"""``ai.inter2former::PromptConvolution`` (version 5): DPE's convolution stack on the prompt map's box.

Inputs
    labels   uint8 [H, W]          the prompt map inside the DPE box, values 0..V-1 (H, W >= 1)
    table    float [V, E]          the prompt values' embeddings (a row per value)
    weight1  float [C1, E, 3, 3]   then bias1 float [C1]; layer l: weight<l> [Cl, C(l-1), 3, 3],
    ...                            bias<l> [Cl], for l = 1..4
Outputs
    output   float [1, C4, h, w]   h = ceil(H / 16), w = ceil(W / 16)
Semantics
    ``x = table[labels]`` as [1, E, H, W], then four times ``x = relu(conv(x))`` with a 3x3
    kernel, stride 2 and one pixel of zero padding on each side.

    A native kernel computes it exactly while skipping most of the work: where a position's
    receptive field lies inside the map and holds one prompt value only, its activation is that
    value's constant of the layer (the stack run on the constant map), a function of the weights
    alone. Only positions near a change of value or the map's border are convolved, so the first
    click (all "unknown" but the clicks) costs a few thousand positions instead of the whole
    image.
"""

from __future__ import annotations

import onnx
import torch
from i2f_deploy.custom_ops import DOMAIN, VERSION
from i2f_deploy.custom_ops.function_body import FLOAT, INT64, UINT8, function_body
from onnxscript import OpBuilder, ir
from torch import Tensor

OP_TYPE = "PromptConvolution"
LAYERS = 4
STRIDE = 2  # per layer; the kernel is 2 * STRIDE - 1 wide, padded by STRIDE - 1
WEIGHTS = tuple(f"{kind}{layer}" for layer in range(1, LAYERS + 1) for kind in ("weight", "bias"))
INPUTS = ("labels", "table", *WEIGHTS)
OUTPUTS = ("output",)


def function_proto() -> onnx.FunctionProto:
    """Standard-op definition: the gather and the four convolutions, as the model runs them."""

    def body(op: OpBuilder, labels: ir.Value, table: ir.Value, *weights: ir.Value) -> ir.Value:
        embedded = op.Gather(table, op.Cast(labels, to=INT64), axis=0)  # [H, W, E]
        x = op.Unsqueeze(op.Transpose(embedded, perm=[2, 0, 1]), [0])
        for weight, bias in zip(weights[::2], weights[1::2]):
            x = op.Relu(op.Conv(x, weight, bias, kernel_shape=[3, 3], strides=[STRIDE, STRIDE], pads=[1, 1, 1, 1]))
        return x

    types = {name: UINT8 if name == "labels" else FLOAT for name in INPUTS}
    return function_body(OP_TYPE, types, OUTPUTS, body, __doc__ or "")


def fits(strides: tuple[int, ...]) -> bool:
    """Whether a DPE stack of these strides is this op's (the shipped configurations' is)."""
    return tuple(strides) == (STRIDE,) * LAYERS


def weight_inputs(stack: torch.nn.Module) -> tuple[Tensor, ...]:
    """The DPE stack's convolution tensors in the order of ``WEIGHTS``."""
    convs = [layer for layer in stack.stem if isinstance(layer, torch.nn.Conv2d)]
    return tuple(t for conv in convs for t in (conv.weight, conv.bias))


def torch_op(labels: Tensor, table: Tensor, stack: torch.nn.Module) -> Tensor:
    """Eager: the model's DPE stack on ``labels``; under ONNX export: one ``PromptConvolution`` node."""
    if not torch.onnx.is_in_onnx_export():
        return stack.on_labels(labels, table)
    height, width = labels.shape
    channels = weight_inputs(stack)[-2].shape[0]
    shape = (1, channels, (height + 15) // 16, (width + 15) // 16)
    return torch.onnx.ops.symbolic(
        f"{DOMAIN}::{OP_TYPE}", (labels, table, *weight_inputs(stack)), {}, dtype=table.dtype, shape=shape, version=VERSION
    )
