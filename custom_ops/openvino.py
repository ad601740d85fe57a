"""OpenVINO registration of the ``ai.inter2former`` ops: the native extension library for the ops
it implements (``native.OPENVINO_OPS``), when asked; for every other op one ONNX-frontend
conversion extension, which builds the OpenVINO subgraph from the op's ONNX function body.

The function bodies travel inside the exported model, so this module needs neither torch nor
the exporter: the model file is the single definition of each op for every backend.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import onnx
import onnx.inliner
import openvino as ov
from i2f_deploy.custom_ops import DOMAIN
from i2f_deploy.custom_ops.native import OPENVINO_LIBRARY, OPENVINO_OPS, NativeLoadError, library_dir, openvino_extension
from onnx import helper
from openvino.frontend.onnx import ConversionExtension

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

    calls = itertools.count()

    def convert(context: object) -> list[ov.Output]:
        inputs = [context.get_input(i) for i in range(context.get_input_size())]
        # one node calling the function, inlined by onnx: attributes the body reads from its
        # caller (``ATTRIBUTES`` of an op module) take this node's values
        attributes = {name: context.get_attribute(name) for name in function.attribute}
        call = helper.make_node(function.name, list(function.input), list(function.output), domain=DOMAIN, **attributes)
        graph = helper.make_graph(
            [call],
            function.name,
            [_value_info(name, value) for name, value in zip(function.input, inputs)],
            [helper.make_value_info(name, onnx.TypeProto()) for name in function.output],
        )
        opsets = [*function.opset_import, helper.make_opsetid(DOMAIN, 1)]
        body = onnx.inliner.inline_local_functions(helper.make_model(graph, opset_imports=opsets, functions=[function]))
        subgraph = core.read_model(body.SerializeToString(), b"")
        call_id = next(calls)
        for op in subgraph.get_ops():  # "<op>:<call>/<node>": the profile attributes the body's nodes to its op
            op.set_friendly_name(f"{function.name}:{call_id}/{op.get_friendly_name()}")
        for parameter, value in zip(subgraph.get_parameters(), inputs):
            for target in list(parameter.output(0).get_target_inputs()):
                target.replace_source_output(value)
        return [result.input_value(0) for result in subgraph.get_results()]

    return convert


def conversion_extensions(core: ov.Core, model: onnx.ModelProto, skip: tuple[str, ...] = ()) -> list[ConversionExtension]:
    """One extension per ``ai.inter2former`` function carried by ``model``, but the ``skip`` ops."""
    return [
        ConversionExtension(function.name, DOMAIN, function_converter(core, function))
        for function in model.functions
        if function.domain == DOMAIN and function.name not in skip
    ]


def register(core: ov.Core, model_path: str, native: bool) -> None:
    """Make ``core.read_model(model_path)`` understand the custom ops of that file: with
    ``native``, the ops of the extension library run its kernels (it must have been built)."""
    model = onnx.load(model_path, load_external_data=False)
    skip: tuple[str, ...] = ()
    if native:
        library = openvino_extension()
        if library is None:
            raise FileNotFoundError(f"the native kernels were not built ({library_dir() / OPENVINO_LIBRARY} is missing)")
        try:
            core.add_extension(str(library))
        except RuntimeError as error:
            reason = str(error).strip().splitlines()[-1]
            raise NativeLoadError(f"{library} does not load into OpenVINO {ov.__version__}: {reason}") from None
        skip = OPENVINO_OPS
    for extension in conversion_extensions(core, model, skip):
        core.add_extension(extension)
