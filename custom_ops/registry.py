"""Which function body serves which custom op, and attaching them to an exported model."""

from __future__ import annotations

from collections.abc import Callable

import onnx
from i2f_deploy.custom_ops import (
    DOMAIN,
    VERSION,
    bsq_attention,
    dlu_upsample,
    full_attention,
    hybrid_moe,
    prompt_convolution,
    token_routing,
)
from onnx import helper

OPS = (token_routing, prompt_convolution, bsq_attention, full_attention, hybrid_moe, dlu_upsample)
OP_TYPES = tuple(op.OP_TYPE for op in OPS)
FUNCTIONS: dict[str, Callable[..., onnx.FunctionProto]] = {op.OP_TYPE: op.function_proto for op in OPS}


def _referenced_attributes(op_type: str) -> tuple[str, ...]:
    """Attributes the op's function body takes from the calling node (none: generated per value)."""
    return next(getattr(op, "ATTRIBUTES", ()) for op in OPS if op_type == op.OP_TYPE)


def node_attributes(node: onnx.NodeProto) -> dict[str, object]:
    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}


def attach_functions(model: onnx.ModelProto) -> list[str]:
    """Give every custom op used by ``model`` its model-local function; returns the op types.

    A function body is generated for the attributes of the nodes it serves, so all nodes of one
    op type must share their attributes, unless the body reads them from the calling node
    (an op module's ``ATTRIBUTES``).
    """
    seen: dict[str, dict[str, object]] = {}
    for node in model.graph.node:
        if node.domain != DOMAIN:
            continue
        if node.op_type not in FUNCTIONS:
            raise ValueError(f"unknown op {DOMAIN}::{node.op_type}")
        attributes = node_attributes(node)
        if _referenced_attributes(node.op_type):
            seen.setdefault(node.op_type, {})
            continue
        if seen.setdefault(node.op_type, attributes) != attributes:
            raise ValueError(f"{node.op_type} nodes differ in attributes: {seen[node.op_type]} vs {attributes}")
    existing = {(f.domain, f.name) for f in model.functions}
    for op_type, attributes in seen.items():
        if (DOMAIN, op_type) not in existing:
            model.functions.append(FUNCTIONS[op_type](**attributes))
    if seen and not any(o.domain == DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(DOMAIN, VERSION))
    return sorted(seen)
