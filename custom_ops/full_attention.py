"""``ai.inter2former::FullAttention`` (version 4): the routed tokens' softmax attention with 2-D RoPE.

Inputs
    query          float [M, D]   queries of the routed tokens (M may be 0)
    key            float [N, D]   keys of all tokens
    value          float [N, D]   values of all tokens
    query_tokens   int64 [M]      flat token index of each query, in 0..N-1
    rope_cos       float [N, D]   RoPE cosines of every token (interleaved pairs)
    rope_sin       float [N, D]   RoPE sines of every token
Attributes
    scale          float          softmax scale (D ** -0.5)
Outputs
    output         float [M, D]
Semantics
    RoPE rotates each row x of token t: ``x * cos[t] + rot(x) * sin[t]`` with
    ``rot(a, b) = (b, -a)`` on interleaved channel pairs; queries take their tokens' rows, keys
    their own. ``output = softmax(scale * q_rot @ k_rot.T) @ value`` over all N keys. A native
    kernel computes it per block of queries without the [M, N] score matrix.
"""

from __future__ import annotations

import onnx
import torch
from i2f_deploy.custom_ops import DOMAIN, VERSION
from i2f_deploy.custom_ops.function_body import FLOAT, INT64, function_body
from onnxscript import OpBuilder, ir
from torch import Tensor

OP_TYPE = "FullAttention"
INPUTS = ("query", "key", "value", "query_tokens", "rope_cos", "rope_sin")
OUTPUTS = ("output",)


def function_proto(scale: float) -> onnx.FunctionProto:
    """Standard-op definition; the body is generated for the scale it serves."""

    def rope(op: OpBuilder, x: ir.Value, cos: ir.Value, sin: ir.Value) -> ir.Value:
        # [rows * D/2, (even, odd)]: a shape that holds for no rows too (ONNX Runtime cannot
        # infer the -1 of [0, -1, 2] for an empty x)
        pairs = op.Reshape(x, [-1, 2])
        even, odd = op.Slice(pairs, [0], [1], [1]), op.Slice(pairs, [1], [2], [1])
        rotated = op.Reshape(op.Concat(odd, op.Neg(even), axis=1), op.Shape(x))
        return op.Add(op.Mul(x, cos), op.Mul(rotated, sin))

    def body(op: OpBuilder, query: ir.Value, key: ir.Value, value: ir.Value, query_tokens: ir.Value, rope_cos: ir.Value,
             rope_sin: ir.Value) -> ir.Value:  # fmt: skip
        q = rope(op, query, op.Gather(rope_cos, query_tokens, axis=0), op.Gather(rope_sin, query_tokens, axis=0))
        k = rope(op, key, rope_cos, rope_sin)
        scores = op.MatMul(op.Mul(q, scale), op.Transpose(k, perm=[1, 0]))
        return op.MatMul(op.Softmax(scores, axis=-1), value)

    types = {name: INT64 if name == "query_tokens" else FLOAT for name in INPUTS}
    return function_body(OP_TYPE, types, OUTPUTS, body, __doc__ or "")


def torch_op(query: Tensor, key: Tensor, value: Tensor, query_tokens: Tensor, module: torch.nn.Module) -> Tensor:
    """Eager: the model's full attention; under ONNX export: one ``FullAttention`` node."""
    if not torch.onnx.is_in_onnx_export():
        return module(query, key, value, query_tokens)
    inputs = (query, key, value, query_tokens, module.rope_cos, module.rope_sin)
    return torch.onnx.ops.symbolic(
        f"{DOMAIN}::{OP_TYPE}", inputs, {"scale": float(module.scale)}, dtype=query.dtype, shape=query.shape, version=VERSION
    )
