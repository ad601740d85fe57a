"""OpenVINO registration of the ``ai.inter2former`` ops: one ONNX-frontend conversion
extension per op, which builds the OpenVINO subgraph from the op's ONNX function body.

The function bodies travel inside the exported model, so this module needs neither torch nor
the exporter: the model file is the single definition of each op for every backend.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx
import openvino as ov
from onnx import helper
from openvino.frontend.onnx import ConversionExtension

from i2f_deploy.custom_ops import DOMAIN

_ONNX_TYPES = {
    ov.Type.f32: onnx.TensorProto.FLOAT,
    ov.Type.i64: onnx.TensorProto.INT64,
    ov.Type.i32: onnx.TensorProto.INT32,
    ov.Type.u8: onnx.TensorProto.UINT8,
    ov.Type.boolean: onnx.TensorProto.BOOL,
}


def _value_info(name: str, value: ov.Output) -> onnx.ValueInfoProto:
    shape = value.get_partial_shape()
    dims = [d.get_length() if d.is_static else None for d in shape] if shape.rank.is_static else None
    element = value.get_element_type()
    if element not in _ONNX_TYPES:
        raise TypeError(f"{DOMAIN} op input {name!r} has unsupported element type {element}")
    return helper.make_tensor_value_info(name, _ONNX_TYPES[element], dims)


def function_converter(core: ov.Core, function: onnx.FunctionProto) -> Callable[..., list[ov.Output]]:
    """A converter that reads the function body as a small ONNX model and splices it in."""

    def convert(context: object) -> list[ov.Output]:
        inputs = [context.get_input(i) for i in range(context.get_input_size())]
        graph = helper.make_graph(
            list(function.node),
            function.name,
            [_value_info(name, value) for name, value in zip(function.input, inputs)],
            [helper.make_value_info(name, onnx.TypeProto()) for name in function.output],
        )
        body = helper.make_model(graph, opset_imports=list(function.opset_import))
        subgraph = core.read_model(body.SerializeToString(), b"")
        for parameter, value in zip(subgraph.get_parameters(), inputs):
            for target in list(parameter.output(0).get_target_inputs()):
                target.replace_source_output(value)
        return [result.input_value(0) for result in subgraph.get_results()]

    return convert


def conversion_extensions(core: ov.Core, model: onnx.ModelProto) -> list[ConversionExtension]:
    """One extension per ``ai.inter2former`` function carried by ``model``."""
    return [
        ConversionExtension(function.name, DOMAIN, function_converter(core, function))
        for function in model.functions
        if function.domain == DOMAIN
    ]


def register(core: ov.Core, model_path: str) -> None:
    """Make ``core.read_model(model_path)`` understand the custom ops of that file."""
    model = onnx.load(model_path, load_external_data=False)
    for extension in conversion_extensions(core, model):
        core.add_extension(extension)
