"""``ai.inter2former::BSQAttention`` (version 3): attention over binarised key codes, O(N).

Inputs
    query          float [M, D]   queries of the non-routed tokens (M may be 0)
    key            float [N, D]   keys of all tokens
    value          float [N, D]   values of all tokens
    code_weight    float [B, D]   ``code_proj`` weight (B = code bits, 8)
    code_bias      float [B]      ``code_proj`` bias
    code_keys      float [2^B, D] key of every code: ``[bits, 1 - bits] @ codebook``
Attributes
    scale          float          softmax scale (D ** -0.5)
    code_size      int            B
Outputs
    output         float [M, D]
Semantics
    Each key's code is the sign pattern of ``key @ code_weight.T + code_bias`` (bit = value >= 0,
    most significant first). Values are summed per code and counted; each query attends to the
    used codes: ``softmax(scale * q @ K_c.T) @ V_sum / (softmax(scale * q @ K_c.T) @ count)``,
    which equals softmax attention over all N keys with each key replaced by its code's key.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from i2f_deploy.custom_ops import DOMAIN, VERSION
from i2f_deploy.custom_ops.function_body import FLOAT, INT64, function_body
from onnxscript import OpBuilder, ir
from torch import Tensor

OP_TYPE = "BSQAttention"
INPUTS = ("query", "key", "value", "code_weight", "code_bias", "code_keys")
OUTPUTS = ("output",)


def function_proto(scale: float, code_size: int) -> onnx.FunctionProto:
    """Standard-op definition; the body is generated for the attribute values it serves."""
    place_values = ir.tensor(2 ** np.arange(code_size - 1, -1, -1), name="place_values")

    def body(op: OpBuilder, query: ir.Value, key: ir.Value, value: ir.Value, code_weight: ir.Value,
             code_bias: ir.Value, code_keys: ir.Value) -> ir.Value:  # fmt: skip
        projected = op.Add(op.MatMul(key, op.Transpose(code_weight, perm=[1, 0])), code_bias)
        bits = op.Cast(op.GreaterOrEqual(projected, 0.0), to=INT64)
        codes = op.ReduceSum(op.Mul(bits, place_values), [1], keepdims=1)

        # Per-code sums as a one-hot product: ScatterND with reduction="add" races on duplicate
        # indices in multi-threaded ONNX Runtime (measured: results vary run to run at N=16384).
        num_codes = op.Squeeze(op.Shape(code_keys, start=0, end=1), [0])
        code_ids = op.Range(0, num_codes, 1)
        one_hot = op.Cast(op.Equal(codes, code_ids), to=FLOAT)
        value_sums = op.Gemm(one_hot, value, transA=1)
        counts = op.ReduceSum(one_hot, [0], keepdims=0)

        scores = op.MatMul(op.Mul(query, scale), op.Transpose(code_keys, perm=[1, 0]))
        # unused codes masked by adding a [codes] row of 0 / -inf: a broadcast Add is fast where a
        # broadcast Where over [M, codes] took 1.2 ms a block on ONNX Runtime at 1024
        mask = op.Where(op.Greater(counts, 0.0), 0.0, -np.inf)
        attention = op.Softmax(op.Add(scores, mask), axis=-1)
        numerator = op.MatMul(attention, value_sums)
        denominator = op.MatMul(attention, op.Unsqueeze(counts, [1]))
        return op.Div(numerator, denominator)

    return function_body(OP_TYPE, dict.fromkeys(INPUTS, FLOAT), OUTPUTS, body, __doc__ or "")


def torch_op(query: Tensor, key: Tensor, value: Tensor, module: torch.nn.Module) -> Tensor:
    """Eager: the model's BSQ attention; under ONNX export: one ``BSQAttention`` node."""
    if not torch.onnx.is_in_onnx_export():
        return module(query, key, value)
    inputs = (query, key, value, module.code_proj.weight, module.code_proj.bias, module.code_keys)
    return torch.onnx.ops.symbolic(
        f"{DOMAIN}::{OP_TYPE}", inputs, {"scale": float(module.scale), "code_size": module.code_size},
        dtype=query.dtype, shape=query.shape, version=VERSION
    )
