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

import onnx
import torch
from i2f_deploy.custom_ops import DOMAIN, VERSION
from i2f_deploy.custom_ops.function_body import FLOAT, INT64, function_body
from onnxscript import OpBuilder, ir
from torch import Tensor

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
    """Standard-op definition; the body is generated for the attribute values it serves (one
    block per expert)."""

    def body(op: OpBuilder, x: ir.Value, routed: ir.Value, *weights: ir.Value) -> ir.Value:
        tensors = dict(zip(WEIGHTS, weights))

        def linear(v: ir.Value, weight: ir.Value, bias: ir.Value) -> ir.Value:
            return op.Add(op.MatMul(v, op.Transpose(weight, perm=[1, 0])), bias)

        def swiglu(v: ir.Value, w1: ir.Value, b1: ir.Value, w2: ir.Value, b2: ir.Value, w3: ir.Value, b3: ir.Value,
                   ln_w: ir.Value, ln_b: ir.Value) -> ir.Value:  # fmt: skip
            gate = linear(v, w1, b1)
            hidden = op.Mul(op.Mul(gate, op.Sigmoid(gate)), linear(v, w2, b2))
            hidden = op.LayerNormalization(hidden, ln_w, ln_b, axis=-1, epsilon=epsilon)
            return linear(hidden, w3, b3)

        shared = swiglu(x, *weights[:6], tensors["shared_ln_w"], tensors["shared_ln_b"])
        rows = op.Unsqueeze(routed, [1])
        x_routed = op.Gather(x, routed, axis=0)
        shared_score = op.Sigmoid(linear(x_routed, tensors["shared_gate_w"], tensors["shared_gate_b"]))
        expert_scores = op.Sigmoid(linear(x_routed, tensors["expert_gate_w"], tensors["expert_gate_b"]))
        choice = op.ArgMax(op.Add(expert_scores, tensors["expert_bias"]), axis=1, keepdims=1)
        expert_score = op.GatherElements(expert_scores, choice, axis=1)
        mix = op.Softmax(op.Concat(shared_score, expert_score, axis=1), axis=1)
        shared_weight, expert_weight = op.Split(mix, [1, 1], axis=1, _outputs=2)

        expert_out = op.ConstantOfShape(op.Shape(x_routed), value=ir.tensor([0.0], dtype=FLOAT))
        choice_flat = op.Squeeze(choice, [1])
        for expert in range(num_experts):
            picked = op.Transpose(op.NonZero(op.Equal(choice_flat, expert)), perm=[1, 0])
            params = [op.Gather(tensors[f"experts_{p}"], expert, axis=0) for p in ("w1", "b1", "w2", "b2", "w3", "b3")]
            out = swiglu(op.GatherND(x_routed, picked), *params, tensors["select_ln_w"], tensors["select_ln_b"])
            expert_out = op.ScatterND(expert_out, picked, out)

        mixed = op.Add(op.Mul(op.Gather(shared, routed, axis=0), shared_weight), op.Mul(expert_out, expert_weight))
        return op.ScatterND(shared, rows, mixed)

    types = {name: INT64 if name == "routed" else FLOAT for name in INPUTS}
    return function_body(OP_TYPE, types, OUTPUTS, body, __doc__ or "")


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
