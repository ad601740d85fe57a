"""ONNX Runtime runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from i2f_deploy.errors import I2FError
from i2f_deploy.runtime import check_inputs
from i2f_deploy.runtime.options import OrtOptions


class OrtRunner:
    def __init__(self, path: Path, threads: int | None, options: OrtOptions = OrtOptions()) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise I2FError("backend onnxruntime is not installed (pip install onnxruntime)") from None
        session_options = ort.SessionOptions()
        if threads:
            session_options.intra_op_num_threads = threads
            session_options.inter_op_num_threads = 1
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.spinning else "0")
        self.session = ort.InferenceSession(str(path), session_options, providers=["CPUExecutionProvider"])
        self.kernels = "function-body"  # ONNX Runtime inlines the custom ops' functions
        self.concurrent = True  # an InferenceSession takes concurrent runs
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        self.input_shapes = {i.name: tuple(i.shape) for i in self.session.get_inputs()}

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_inputs(self.input_names, inputs)
        feeds = {name: inputs[name] for name in self.input_names}
        return dict(zip(self.output_names, self.session.run(None, feeds)))
