"""Graph-level rewrites of the exported encoder that change no value but let ONNX Runtime fuse.

The exporter writes exact GELU as ``x * (0.5 * (1 + erf(x / sqrt 2)))``. OpenVINO recognises it
as one Gelu; ONNX Runtime's GeluFusion only matches ``(x * (1 + erf(x / sqrt 2))) * 0.5``, so it
ran five element-wise passes over the MLP's widest tensor per block. Scaling by 0.5 is exact in
floating point, so the reordered graph computes the same bits.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import numpy_helper


def _constant(model: onnx.ModelProto, name: str) -> float | None:
    """The value of a scalar initializer or Constant node output, else None."""
    for tensor in model.graph.initializer:
        if tensor.name == name:
            value = numpy_helper.to_array(tensor)
            return float(value) if value.size == 1 else None
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name and node.attribute[0].name == "value":
            value = numpy_helper.to_array(node.attribute[0].t)
            return float(value) if value.size == 1 else None
    return None


def _other(node: onnx.NodeProto, name: str) -> str | None:
    """The input of a two-input ``node`` that is not ``name`` (None if ``name`` is not one)."""
    if len(node.input) != 2 or name not in node.input:
        return None
    return node.input[1] if node.input[0] == name else node.input[0]


def gelu_in_fusable_order(model: onnx.ModelProto) -> int:
    """Rewrite every ``Mul(x, Mul(0.5, Add(Erf(Div(x, sqrt 2)), 1)))`` in place as
    ``Mul(Mul(x, Add(...)), 0.5)``; returns how many were rewritten."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    producers = {output: node for node in model.graph.node for output in node.output}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def only_consumer(name: str, op_type: str) -> onnx.NodeProto | None:
        nodes = consumers.get(name, [])
        return nodes[0] if len(nodes) == 1 and nodes[0].op_type == op_type else None

    rewritten = 0
    for erf in [node for node in model.graph.node if node.op_type == "Erf"]:
        div = producers.get(erf.input[0])
        add = only_consumer(erf.output[0], "Add")
        half = add and only_consumer(add.output[0], "Mul")
        outer = half and only_consumer(half.output[0], "Mul")
        if div is None or div.op_type != "Div" or add is None or half is None or outer is None:
            continue
        x, root2 = div.input
        one, half_name = _other(add, erf.output[0]), _other(half, add.output[0])
        sqrt2_value, one_value, half_value = (_constant(model, name) if name else None for name in (root2, one, half_name))
        if _other(outer, half.output[0]) != x or sqrt2_value is None or one_value is None or half_value is None:
            continue
        if not (np.isclose(sqrt2_value, math.sqrt(2)) and [one_value, half_value] == [1.0, 0.5]):
            continue
        half.input[:] = [x, add.output[0]]  # x * (1 + erf)
        outer.input[:] = [half.output[0], half_name]  # ... * 0.5
        rewritten += 1
    return rewritten
