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
from torch import Tensor

from i2f_deploy.custom_ops import DOMAIN, VERSION
from i2f_deploy.custom_ops._builder import FunctionBuilder

OP_TYPE = "BSQAttention"
INPUTS = ("query", "key", "value", "code_weight", "code_bias", "code_keys")
OUTPUTS = ("output",)


def function_proto(scale: float, code_size: int) -> onnx.FunctionProto:
    b = FunctionBuilder(OP_TYPE, INPUTS, __doc__ or "")
    projected = b.op("Add", b.op("MatMul", "key", b.op("Transpose", "code_weight", perm=[1, 0])), "code_bias")
    bits = b.op("Cast", b.op("GreaterOrEqual", projected, b.const(0.0, np.float32)), to=onnx.TensorProto.INT64)
    place_values = b.const(2 ** np.arange(code_size - 1, -1, -1))
    codes = b.op("ReduceSum", b.op("Mul", bits, place_values), b.const([1]), keepdims=1)

    # Per-code sums as a one-hot product: ScatterND with reduction="add" races on duplicate
    # indices in multi-threaded ONNX Runtime (measured: results vary run to run at N=16384).
    num_codes = b.op("Squeeze", b.op("Shape", "code_keys", start=0, end=1), b.const([0]))
    code_ids = b.op("Range", b.const(0), num_codes, b.const(1))
    one_hot = b.op("Cast", b.op("Equal", codes, code_ids), to=onnx.TensorProto.FLOAT)
    value_sums = b.op("Gemm", one_hot, "value", transA=1)
    counts = b.op("ReduceSum", one_hot, b.const([0]), keepdims=0)

    scores = b.op("MatMul", b.op("Mul", "query", b.const(scale, np.float32)), b.op("Transpose", "code_keys", perm=[1, 0]))
    # unused codes masked by adding a [codes] row of 0 / -inf: a broadcast Add is fast where a
    # broadcast Where over [M, codes] took 1.2 ms a block on ONNX Runtime at 1024
    used = b.op("Greater", counts, b.const(0.0, np.float32))
    mask = b.op("Where", used, b.const(0.0, np.float32), b.const(-np.inf, np.float32))
    scores = b.op("Add", scores, mask)
    attn = b.op("Softmax", scores, axis=-1)
    numerator = b.op("MatMul", attn, value_sums)
    denominator = b.op("MatMul", attn, b.op("Unsqueeze", counts, b.const([1])))
    return b.build({"output": b.op("Div", numerator, denominator)})


def torch_op(query: Tensor, key: Tensor, value: Tensor, module: torch.nn.Module) -> Tensor:
    """Eager: the model's BSQ attention; under ONNX export: one ``BSQAttention`` node."""
    if not torch.onnx.is_in_onnx_export():
        return module(query, key, value)
    inputs = (query, key, value, module.code_proj.weight, module.code_proj.bias, module.code_keys)
    return torch.onnx.ops.symbolic(
        f"{DOMAIN}::{OP_TYPE}", inputs, {"scale": float(module.scale), "code_size": module.code_size}, dtype=query.dtype, shape=query.shape, version=VERSION
    )
