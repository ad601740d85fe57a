"""The machine's f32 GEMM rate, measured in the bench's own run (one MatMul on ONNX Runtime's
MLAS, the bench's thread count): the yardstick for a row's achieved GFLOP/s, under the same load."""

from __future__ import annotations

import statistics
import time

import numpy as np

GEMM_SIDE = 1024  # 2.1 GFLOP a call: long enough to time, square so that no layout favours it


def gemm_gflop_per_s(threads: int, repeat: int = 5) -> float:
    """Median GFLOP/s of a ``GEMM_SIDE``-cubed f32 matrix product on ``threads`` threads."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    shape = [GEMM_SIDE, GEMM_SIDE]
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name in ("a", "b")],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {name: rng.standard_normal(shape, dtype=np.float32) for name in ("a", "b")}
    session.run(None, feeds)
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        session.run(None, feeds)
        seconds.append(time.perf_counter() - start)
    return 2 * GEMM_SIDE**3 / statistics.median(seconds) / 1e9
