"""Saving exported graphs: optional onnxsim with an output check, checker, external data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from i2f_deploy.errors import I2FError

EXTERNAL_DATA_THRESHOLD = 256 * 2**20  # bytes of initializers above which weights go to FILE.data
SIMPLIFY_TOLERANCE = 1e-5


def run_with_onnxruntime(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def simplify_checked(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> tuple[onnx.ModelProto, str]:
    """onnxsim ``model``, kept only if its outputs on ``feeds`` stay within 1e-5 (and say so)."""
    import onnxsim

    simplified, ok = onnxsim.simplify(model)
    if not ok:
        return model, "onnxsim could not validate its result; kept the unsimplified graph"
    before = run_with_onnxruntime(model, feeds)
    after = run_with_onnxruntime(simplified, feeds)
    worst = max(float(np.abs(a.astype(np.float64) - b).max(initial=0.0)) for a, b in zip(before, after))
    if worst > SIMPLIFY_TOLERANCE:
        return model, f"onnxsim changed outputs by {worst:.2e}; kept the unsimplified graph"
    return simplified, f"onnxsim: {len(model.graph.node)} -> {len(simplified.graph.node)} nodes, outputs unchanged ({worst:.1e})"


def initializer_bytes(model: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) for t in model.graph.initializer)


def save_model(model: onnx.ModelProto, path: Path) -> list[Path]:
    """Check and save; weights go to ``<file>.data`` when they are large. Returns files written."""
    try:
        onnx.checker.check_model(model, full_check=False)
    except onnx.checker.ValidationError as exc:
        raise I2FError(f"exported graph {path.name} fails onnx.checker: {exc}") from None
    if initializer_bytes(model) > EXTERNAL_DATA_THRESHOLD:
        data = path.with_name(path.name + ".data")
        onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location=data.name, size_threshold=1024)
        onnx.checker.check_model(str(path), full_check=True)
        return [path, data]
    onnx.save(model, path)
    onnx.checker.check_model(str(path), full_check=True)
    return [path]
