"""``ai.inter2former::HybridMoE`` (version 3): shared expert for all tokens, top-1 routed expert
for the routed ones.

Inputs
    x              float [N, C]     normalised tokens
    routed         int64 [M]        flat indices of routed tokens (M may be 0 or N)
    shared_w1, shared_b1, shared_w2, shared_b2, shared_w3, shared_b3
                   float            shared SwiGLU: ``w3(LN(silu(w1 x) * w2 x))``
    shared_ln_w, shared_ln_b        LayerNorm of the shared hidden layer
    shared_gate_w, shared_gate_b    [1, C], [1]: shared gate (sigmoid)
    expert_gate_w, expert_gate_b    [E, C], [E]: expert gates (sigmoid)
    expert_bias    float [E]        load-balancing bias, added for the choice only
    experts_w1, experts_b1, experts_w2, experts_b2, experts_w3, experts_b3
                   float [E, ...]   stacked routed SwiGLU experts
    select_ln_w, select_ln_b        LayerNorm of the routed experts' hidden layer
Attributes
    num_experts    int              E
    epsilon        float            LayerNorm epsilon
Outputs
    y              float [N, C]
Semantics
    ``y = shared(x)`` for every token; for routed tokens, with ``g_s = sigmoid(shared gate)``,
    ``g = sigmoid(expert gates)``, ``e = argmax(g + expert_bias)`` and
    ``(w_s, w_e) = softmax(g_s, g[e])``: ``y = w_s * shared(x) + w_e * expert_e(x)``.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from torch import Tensor

from i2f_deploy.custom_ops import DOMAIN, VERSION
from i2f_deploy.custom_ops._builder import FunctionBuilder

OP_TYPE = "HybridMoE"
WEIGHTS = (
    "shared_w1", "shared_b1", "shared_w2", "shared_b2", "shared_w3", "shared_b3",
    "shared_ln_w", "shared_ln_b", "shared_gate_w", "shared_gate_b",
    "expert_gate_w", "expert_gate_b", "expert_bias",
    "experts_w1", "experts_b1", "experts_w2", "experts_b2", "experts_w3", "experts_b3",
    "select_ln_w", "select_ln_b",
)  # fmt: skip
INPUTS = ("x", "routed", *WEIGHTS)
OUTPUTS = ("y",)


def function_proto(num_experts: int, epsilon: float) -> onnx.FunctionProto:
    b = FunctionBuilder(OP_TYPE, INPUTS, __doc__ or "")

    def linear(x: str, weight: str, bias: str) -> str:
        return b.op("Add", b.op("MatMul", x, b.op("Transpose", weight, perm=[1, 0])), bias)

    def swiglu(x: str, w1: str, b1: str, w2: str, b2: str, w3: str, b3: str, ln_w: str, ln_b: str) -> str:
        gate = linear(x, w1, b1)
        hidden = b.op("Mul", b.op("Mul", gate, b.op("Sigmoid", gate)), linear(x, w2, b2))
        hidden = b.op("LayerNormalization", hidden, ln_w, ln_b, axis=-1, epsilon=epsilon)
        return linear(hidden, w3, b3)

    shared = swiglu("x", *WEIGHTS[:6], "shared_ln_w", "shared_ln_b")
    rows = b.op("Unsqueeze", "routed", b.const([1]))
    x_routed = b.op("Gather", "x", "routed", axis=0)
    shared_score = b.op("Sigmoid", linear(x_routed, "shared_gate_w", "shared_gate_b"))
    expert_scores = b.op("Sigmoid", linear(x_routed, "expert_gate_w", "expert_gate_b"))
    choice = b.op("ArgMax", b.op("Add", expert_scores, "expert_bias"), axis=1, keepdims=1)
    expert_score = b.op("GatherElements", expert_scores, choice, axis=1)
    weights = b.op("Softmax", b.op("Concat", shared_score, expert_score, axis=1), axis=1)
    shared_weight, expert_weight = b.op("Split", weights, b.const([1, 1]), axis=1, outputs=2)

    expert_out = b.op("ConstantOfShape", b.op("Shape", x_routed), value=onnx.numpy_helper.from_array(np.zeros(1, np.float32)))
    choice_flat = b.op("Squeeze", choice, b.const([1]))
    for expert in range(num_experts):
        index = b.const(expert)
        picked = b.op("Transpose", b.op("NonZero", b.op("Equal", choice_flat, index)), perm=[1, 0])
        params = [b.op("Gather", f"experts_{p}", index, axis=0) for p in ("w1", "b1", "w2", "b2", "w3", "b3")]
        out = swiglu(b.op("GatherND", x_routed, picked), *params, "select_ln_w", "select_ln_b")
        expert_out = b.op("ScatterND", expert_out, picked, out)

    mixed = b.op(
        "Add",
        b.op("Mul", b.op("Gather", shared, "routed", axis=0), shared_weight),
        b.op("Mul", expert_out, expert_weight),
    )
    return b.build({"y": b.op("ScatterND", shared, rows, mixed)})


def weight_inputs(m: torch.nn.Module) -> tuple[Tensor, ...]:
    """The model's HMoE tensors in the order of ``WEIGHTS``."""
    return (
        m.shared_ffn.w1.weight, m.shared_ffn.w1.bias, m.shared_ffn.w2.weight, m.shared_ffn.w2.bias,
        m.shared_ffn.w3.weight, m.shared_ffn.w3.bias, m.shared_ln.weight, m.shared_ln.bias,
        m.shared_gate[0].weight, m.shared_gate[0].bias, m.expert_gate[0].weight, m.expert_gate[0].bias,
        m.exp_bias, m.select_ffn_w1, m.select_ffn_b1, m.select_ffn_w2, m.select_ffn_b2,
        m.select_ffn_w3, m.select_ffn_b3, m.select_ln.weight, m.select_ln.bias,
    )  # fmt: skip


def torch_op(x: Tensor, routed: Tensor, module: torch.nn.Module) -> Tensor:
    """Eager: the model's HMoE; under ONNX export: one ``HybridMoE`` node."""
    if not torch.onnx.is_in_onnx_export():
        return module(x, routed)
    m = module
    weights = weight_inputs(m)
    attributes = {"num_experts": m.num_experts, "epsilon": float(m.shared_ln.eps)}
    return torch.onnx.ops.symbolic(f"{DOMAIN}::{OP_TYPE}", (x, routed, *weights), attributes, dtype=x.dtype, shape=x.shape, version=VERSION)
