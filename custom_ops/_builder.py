"""A small helper to write ONNX function bodies as straight-line Python."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from i2f_deploy.custom_ops import DOMAIN

BODY_OPSET = 18


class FunctionBuilder:
    """Accumulates the nodes of one ``FunctionProto``; every call returns its output name(s)."""

    def __init__(self, name: str, inputs: Sequence[str], doc: str = "") -> None:
        self.name = name
        self.inputs = list(inputs)
        self.doc = doc
        self.nodes: list[onnx.NodeProto] = []
        self._ids = itertools.count()

    def _fresh(self, hint: str) -> str:
        return f"{hint}_{next(self._ids)}"

    def op(self, op_type: str, *inputs: str, outputs: int = 1, refs: Sequence[onnx.AttributeProto] = (),
           **attributes: object) -> str | tuple[str, ...]:
        """A node; ``refs`` are attributes that take the calling node's (``helper.make_attribute_ref``)."""
        names = [self._fresh(op_type.lower()) for _ in range(outputs)]
        node = helper.make_node(op_type, list(inputs), names, **attributes)
        node.attribute.extend(refs)
        self.nodes.append(node)
        return names[0] if outputs == 1 else tuple(names)

    def const(self, value: object, dtype: type = np.int64) -> str:
        tensor = numpy_helper.from_array(np.asarray(value, dtype=dtype), name=self._fresh("const"))
        return self.op("Constant", value=tensor)

    def build(self, outputs: dict[str, str], attributes: Sequence[str] = ()) -> onnx.FunctionProto:
        """Name the results and return the function (outputs: declared name -> value name;
        ``attributes``: the caller's attributes that ``refs`` read)."""
        for declared, value in outputs.items():
            self.nodes.append(helper.make_node("Identity", [value], [declared]))
        return helper.make_function(
            DOMAIN,
            self.name,
            self.inputs,
            list(outputs),
            self.nodes,
            opset_imports=[helper.make_opsetid("", BODY_OPSET)],
            attributes=list(attributes),
            doc_string=self.doc,
        )
