"""Tracing modules to ONNX and saving the graphs: onnxsim with an output check, checker,
external data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import torch

from i2f_deploy.errors import I2FError

EXTERNAL_DATA_THRESHOLD = 256 * 2**20  # bytes of initializers above which weights go to FILE.data
SIMPLIFY_TOLERANCE = 1e-4  # float32 reordering noise on logits of magnitude ~10


def trace_to_onnx(
    module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], input_names: Sequence[str], output_names: Sequence[str], opset: int
) -> onnx.ModelProto:
    """Export ``module`` with the dynamo exporter (data-dependent shapes stay symbolic)."""
    with torch.no_grad():
        program = torch.onnx.export(
            module.eval(),
            inputs,
            dynamo=True,
            input_names=list(input_names),
            output_names=list(output_names),
            opset_version=opset,
            optimize=True,
            verbose=False,
        )
    assert program is not None  # dynamo=True always returns the program
    return program.model_proto


def run_with_onnxruntime(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def simplify_checked(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> tuple[onnx.ModelProto, str]:
    """onnxsim ``model``, kept only if its outputs on ``feeds`` stay within ``SIMPLIFY_TOLERANCE``."""
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
