"""Where an encoding or a decoder click spends its time: ONNX Runtime's profiler and OpenVINO's
performance counters, summed per operator type (the per-node names of the two backends do not
match). On OpenVINO also per custom op: its native node, or the nodes of its function body (our
conversion names them ``<op>:<call>/...``, see ``custom_ops.openvino``; a node the plugin fused
keeps one of its parts' names, so a body's share is approximate at its edges). ONNX Runtime's
inlined nodes do not keep their op's name, so its profile has no per-op split; its native path
(the decoder's segments with the kernels between them) is timed per step: each op's kernel, and
the graph segments together."""

from __future__ import annotations

import heapq
import json
import re
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from operator import itemgetter
from pathlib import Path

import numpy as np

from i2f_deploy.custom_ops import DOMAIN

_BODY_NODE = re.compile(r"^([A-Za-z]+):\d+/")  # a function-body node converted by custom_ops.openvino


def _summary(nodes: Iterable[tuple[str, str, float]], runs: int, limit: int, custom_types: set[str]) -> dict:
    """``nodes``: (node name, op type, ms) over ``runs`` runs -> the top op types and the custom ops."""
    by_type: defaultdict[str, float] = defaultdict(float)
    by_custom_op: defaultdict[str, float] = defaultdict(float)
    for name, op_type, ms in nodes:
        by_type[op_type] += ms
        body = _BODY_NODE.match(name)
        owner = op_type if op_type in custom_types else body.group(1) if body and body.group(1) in custom_types else None
        if owner:
            by_custom_op[owner] += ms
    grand = sum(by_type.values()) or 1
    ranked = heapq.nlargest(limit, by_type.items(), key=itemgetter(1))  # as Counter.most_common: ties in first-seen order
    top = [{"op_type": op, "ms_per_run": t / runs, "share": t / grand} for op, t in ranked]
    return {"ops": top, "custom_ops": {op: t / runs for op, t in sorted(by_custom_op.items())}}


def _custom_types() -> set[str]:
    from i2f_deploy.custom_ops.native import OPENVINO_OPS

    return set(OPENVINO_OPS)


def profile_onnxruntime(onnx_path: Path, feeds: dict[str, np.ndarray], threads: int, runs: int = 3,
                        limit: int = 12) -> dict:
    """``{"ops": [top op types], "custom_ops": {}}`` (see the module's note)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as scratch:
        options.profile_file_prefix = str(Path(scratch) / "ort")
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        session.run(None, feeds)  # warm-up, excluded below by counting runs from the end
        for _ in range(runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    per_run = len(kernels) // (runs + 1)
    nodes = ((e["name"], e["args"]["op_name"], e["dur"] / 1000) for e in kernels[per_run:])
    return _summary(nodes, runs, limit, set())


def profile_onnxruntime_segments(artifact_dir: Path, feeds: dict[str, np.ndarray], threads: int, runs: int = 3,
                                 limit: int = 12) -> dict:
    """ONNX Runtime's native path: ``{"ops": [each op's kernels, "graph segments"], "custom_ops":
    {op: ms per run}}`` from the runner's own step times (the segments' operators are not split)."""
    from i2f_deploy import runtime

    decoder = runtime.load(artifact_dir, "decoder", "onnxruntime", threads, kernels="native", verify=False)
    runner = decoder.graph
    runner.step_ms = []  # type: ignore[attr-defined]
    decoder.run(feeds)  # warm-up
    nodes = []
    for _ in range(runs):
        decoder.run(feeds)
        for (step, _session, _kernel), ms in zip(runner.steps, runner.step_ms):  # type: ignore[attr-defined]
            nodes.append((step.graph or str(step.op), step.op or "graph segments", ms))
    return _summary(nodes, runs, limit, {str(step.op) for step, _session, _kernel in runner.steps if step.op})  # type: ignore[attr-defined]


def profile_openvino(onnx_path: Path, feeds: dict[str, np.ndarray], threads: int, runs: int = 3,
                     limit: int = 12, native: bool = False) -> dict:
    """``{"ops": [top op types], "custom_ops": {op: ms per run}}``; ``native``: the ops of the
    extension library run natively."""
    import openvino as ov

    from i2f_deploy.custom_ops.openvino import register

    core = ov.Core()
    register(core, str(onnx_path), native)
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads,
              "PERF_COUNT": True}
    model = core.read_model(str(onnx_path))
    # an extension's op runs as a "Reference" node: named here by its own type (e.g. DLUUpsample)
    custom = {op.get_friendly_name(): op.get_type_name() for op in model.get_ops() if op.get_type_info().version_id == DOMAIN}
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    request.infer(feeds)
    nodes = []
    for _ in range(runs):
        request.infer(feeds)
        for info in request.profiling_info:
            if info.status == ov.ProfilingInfo.Status.EXECUTED:
                nodes.append((info.node_name, custom.get(info.node_name, info.node_type), info.real_time.total_seconds() * 1000))
    return _summary(nodes, runs, limit, _custom_types())
