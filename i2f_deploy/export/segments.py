"""The decoder cut at its custom-op nodes, for ONNX Runtime's native path.

ONNX Runtime's wheel ships no C API headers, so no custom-op library can be built for it; instead
``runtime/ort_segments.py`` runs the graph between the ops as segments and calls the ops' native
kernels in between. Each node goes into the earliest segment its inputs allow (after the last cut
op it depends on), so segment ``k`` runs after op ``k - 1`` and before op ``k``. Ops not in
``CUT_OPS`` stay inside the segments as function nodes (ONNX Runtime runs their bodies).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from i2f_deploy.contract import SegmentPlan, SegmentStep, TensorSpec
from i2f_deploy.custom_ops import DOMAIN
from i2f_deploy.errors import I2FError
from i2f_deploy.export.onnx_files import save_model

FOLDER = "decoder_segments"
PLAN = "plan.json"
CONSTANTS = "constants.npz"
# The ops whose native kernel runs between segments, where it beats ONNX Runtime's function body
# alone at a click's real inputs (docs/performance.md). HybridMoE's since its weights are packed
# once per runner and its expert products have an AVX-512 version. FullAttention's kernel beat
# its body alone on the first click's 4096 queries of the 1024 grid (29 against 53 ms in turns,
# load 2); at 300 queries the two were even (4.1 against 3.9 ms). PromptConvolution's since its
# kernel convolves only the positions near a change of prompt value: 2.3 against 73 ms for the
# first click at 1024, 3.5 against 12.7 ms for a medium click's box (in turns, load 2).
CUT_OPS = ("TokenRouting", "PromptConvolution", "BSQAttention", "FullAttention", "HybridMoE", "DLUUpsample")


def _value_types(model: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    graph = model.graph
    types = {v.name: v.type for v in (*graph.value_info, *graph.input, *graph.output)}
    for tensor in graph.initializer:
        types[tensor.name] = onnx.helper.make_tensor_type_proto(tensor.data_type, list(tensor.dims))
    return types


def _stages(model: onnx.ModelProto, cut: tuple[str, ...]) -> tuple[list[int], list[int]]:
    """Per node its segment (cut ops: -1), and the cut nodes' indices in graph order."""
    stage_of: dict[str, int] = {}  # tensor -> the segment after which it exists (graph inputs: 0)
    stages, cut_nodes = [], []
    for index, node in enumerate(model.graph.node):
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise I2FError(f"decoder node {node.name} ({node.op_type}) has a subgraph: the segmenter cannot cut around it")
        stage = max((stage_of.get(name, 0) for name in node.input if name), default=0)
        if node.domain == DOMAIN and node.op_type in cut:
            cut_nodes.append(index)
            stage = max(stage, len(cut_nodes) - 1)  # an op runs after the one before it
            stages.append(-1)
            for name in node.output:
                stage_of[name] = len(cut_nodes)
        else:
            stages.append(stage)
            for name in node.output:
                stage_of[name] = stage
    return stages, cut_nodes


def split_decoder(model: onnx.ModelProto,
                  cut: tuple[str, ...] = CUT_OPS) -> tuple[SegmentPlan, list[onnx.ModelProto], dict[str, np.ndarray]]:
    """(plan, segment models in the plan's order, the ops' constant inputs) for ``model``; the
    plan's ``graph`` entries are ``segment_<i>.onnx``."""
    graph = model.graph
    types = _value_types(model)
    initializers = {t.name: t for t in graph.initializer}
    stages, cut_nodes = _stages(model, cut)
    graph_outputs = [o.name for o in graph.output]
    # which steps read each tensor: segment k is step 2k, cut op k is step 2k + 1
    readers: dict[str, set[int]] = {}
    for index, node in enumerate(graph.node):
        step = 2 * stages[index] if stages[index] >= 0 else 2 * cut_nodes.index(index) + 1
        for name in node.input:
            readers.setdefault(name, set()).add(step)
    last = 2 * len(cut_nodes) + 1
    for name in graph_outputs:
        readers.setdefault(name, set()).add(last)

    steps: list[SegmentStep] = []
    segments: list[onnx.ModelProto] = []
    constants: dict[str, np.ndarray] = {}
    functions = [f for f in model.functions if f.name not in cut]
    for k in range(len(cut_nodes) + 1):
        nodes = [node for node, stage in zip(graph.node, stages) if stage == k]
        if nodes:
            produced = {name for node in nodes for name in node.output if name}
            read = [name for node in nodes for name in node.input if name]
            inputs = list(dict.fromkeys(name for name in read if name not in produced and name not in initializers))
            outputs = [name for name in dict.fromkeys(n for node in nodes for n in node.output if n)
                       if any(step > 2 * k for step in readers.get(name, ()))]
            missing = [name for name in (*inputs, *outputs) if name not in types]
            if missing:
                raise I2FError(f"decoder segment {k}: no type known for {', '.join(missing)} (shape inference left them out)")
            body = onnx.helper.make_graph(
                nodes, f"decoder_segment_{k}",
                [onnx.helper.make_value_info(name, types[name]) for name in inputs],
                [onnx.helper.make_value_info(name, types[name]) for name in outputs],
                [initializers[name] for name in dict.fromkeys(read) if name in initializers])
            used = {node.op_type for node in nodes if node.domain == DOMAIN}
            segment = onnx.helper.make_model(body, opset_imports=list(model.opset_import), ir_version=model.ir_version,
                                             functions=[f for f in functions if f.name in used])
            segments.append(segment)
            steps.append(SegmentStep(graph=f"segment_{len(segments) - 1}.onnx", inputs=inputs, outputs=outputs))
        if k < len(cut_nodes):
            node = graph.node[cut_nodes[k]]
            for name in node.input:
                if name in initializers:
                    constants[name] = numpy_helper.to_array(initializers[name])
            attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            steps.append(SegmentStep(op=node.op_type, attributes=attributes, inputs=list(node.input), outputs=list(node.output)))
    for name in graph_outputs:  # an output no node computes (the dense export's constant routing)
        if name in initializers:
            constants[name] = numpy_helper.to_array(initializers[name])
    plan_inputs = {}
    for value in graph.input:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        plan_inputs[value.name] = TensorSpec(dtype=onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name, shape=dims)
    plan = SegmentPlan(inputs=plan_inputs, outputs=graph_outputs, constants=CONSTANTS, steps=steps)
    return plan, segments, constants


def write_segments(model: onnx.ModelProto, out_dir: Path, cut: tuple[str, ...] = CUT_OPS) -> list[str]:
    """The segmented decoder in ``out_dir/decoder_segments``; its files relative to ``out_dir``,
    the plan first (``PartFiles.segments``)."""
    plan, segments, constants = split_decoder(model, cut)
    folder = out_dir / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{FOLDER}/{PLAN}"]
    for step, segment in zip([s for s in plan.steps if s.graph], segments):
        save_model(segment, folder / str(step.graph))
        names.append(f"{FOLDER}/{step.graph}")
    np.savez(folder / CONSTANTS, **constants)  # type: ignore[arg-type]  # numpy's stub types savez's keywords as its options
    names.append(f"{FOLDER}/{CONSTANTS}")
    (folder / PLAN).write_text(plan.model_dump_json(indent=1, exclude_none=True) + "\n")
    return names
