"""Where an encoding or a decoder click spends its time: ONNX Runtime's profiler and OpenVINO's
performance counters, summed per operator type (the per-node names of the two backends do not match)."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np


def _top(totals: Counter, runs: int, limit: int) -> list[dict]:
    grand = sum(totals.values()) or 1
    return [{"op_type": op, "ms_per_run": t / runs, "share": t / grand} for op, t in totals.most_common(limit)]


def profile_onnxruntime(onnx_path: Path, feeds: dict[str, np.ndarray], threads: int, runs: int = 3,
                        limit: int = 12) -> list[dict]:
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
    totals: Counter = Counter()
    for event in kernels[per_run:]:
        totals[event["args"]["op_name"]] += event["dur"] / 1000
    return _top(totals, runs, limit)


def profile_openvino(onnx_path: Path, feeds: dict[str, np.ndarray], threads: int, runs: int = 3,
                     limit: int = 12, native: bool = False) -> list[dict]:
    import openvino as ov

    from i2f_deploy.custom_ops import DOMAIN
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
    totals: Counter = Counter()
    for _ in range(runs):
        request.infer(feeds)
        for info in request.profiling_info:
            if info.status == ov.ProfilingInfo.Status.EXECUTED:
                totals[custom.get(info.node_name, info.node_type)] += info.real_time.total_seconds() * 1000
    return _top(totals, runs, limit)
