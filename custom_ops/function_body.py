"""The ``ai.inter2former`` ops' ONNX function bodies, traced with onnxscript and checked as built.

An op module writes its body as a Python function of onnxscript's op builder (``op.Add(x, y)``
returns the value; Python scalars and lists become constants typed like the other inputs), with
plain Python helpers and loops, run once per attribute set: the body is generated for the
attribute values it serves. onnxscript checks each node against its ONNX schema as it is added
(unknown attributes, too many inputs) and infers every value's type from the declared input types;
:func:`function_body` refuses a body where a type does not follow (mismatched dtypes, an untyped
value), so a broken body fails at export, not when a runtime loads the model.

Why the builder and not ``@onnxscript.script`` (onnxscript 0.7.2): script mode translates a
Python ``for`` into an ONNX ``Loop`` (``HybridMoE`` unrolls one block per expert, a count known
when the body is generated), and a call to a Python helper is a ``TranslationError`` ("Invalid
callee"): it calls only ONNX ops or other script functions, each then a function node of its own
that the model would have to carry beside the op. The bodies' helpers (``DLUUpsample``'s
``narrow``, ``TokenRouting``'s ``dilated_cells``) would have to be written out at each use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import onnx
import onnxscript
from i2f_deploy.custom_ops import DOMAIN
from onnxscript import ir

BODY_OPSET = 18
INFERENCE_ERROR = "pkg.onnxscript.shape_inference_error"  # onnxscript's note on a node it could not type

FLOAT, INT64, UINT8, BOOL = ir.DataType.FLOAT, ir.DataType.INT64, ir.DataType.UINT8, ir.DataType.BOOL


def attribute(op: onnxscript.OpBuilder, name: str) -> ir.Value:
    """An int64 scalar holding the calling node's attribute ``name`` (a ``Constant`` reading it)."""
    value = op.Constant(value_int=ir.Attr("value_int", ir.AttributeType.INT, None, ref_attr_name=name))
    value.type, value.shape = ir.TensorType(INT64), ir.Shape([])  # inference cannot read a caller's value
    return value


def attribute_ref(name: str, caller_attribute: str) -> ir.Attr:
    """A node's int attribute ``name`` that takes the calling node's ``caller_attribute``."""
    return ir.Attr(name, ir.AttributeType.INT, None, ref_attr_name=caller_attribute)


def _check_types(function: ir.Function) -> None:
    for node in function:
        refers_to_caller = any(a.is_ref() for a in node.attributes.values())
        error = node.metadata_props.get(INFERENCE_ERROR)
        if error is not None and not refers_to_caller:
            raise TypeError(f"{function.name} body: {node.op_type} node {node.name}: {error}")
        untyped = [output.name for output in node.outputs if output.type is None]
        if untyped:
            raise TypeError(f"{function.name} body: {node.op_type} node {node.name} gives untyped {untyped}")


def function_body(
    op_type: str,
    inputs: Mapping[str, ir.DataType],
    outputs: Sequence[str],
    trace: Callable[..., ir.Value | Sequence[ir.Value]],
    doc: str,
    attributes: Sequence[str] = (),
) -> onnx.FunctionProto:
    """``trace(op, *inputs)`` as the function ``DOMAIN::op_type``; it returns the values of
    ``outputs``, in order. ``attributes``: the calling node's int attributes the body reads
    (:func:`attribute`, :func:`attribute_ref`)."""
    function = onnxscript.build_function(
        trace,
        [ir.Value(name=name, type=ir.TensorType(dtype)) for name, dtype in inputs.items()],
        domain=DOMAIN,
        name=op_type,
        attributes=[ir.Attr(name, ir.AttributeType.INT, None) for name in attributes],
        opset_imports={"": BODY_OPSET},
    )
    _check_types(function)
    if len(function.outputs) != len(outputs):
        raise ValueError(f"{op_type} body returns {len(function.outputs)} values for outputs {list(outputs)}")
    for value, name in zip(function.outputs, outputs):
        value.name = name
    proto = ir.to_proto(function)
    proto.doc_string = doc
    del proto.value_info[:]  # the types were for the check; the caller's node types the call
    for node in proto.node:
        del node.metadata_props[:]  # onnxscript's trace notes, not part of the op
    return proto
