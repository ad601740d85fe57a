"""OpenVINO runner: reads the ONNX file with the custom ops registered from their functions or
the native extension (``kernels``), or an IR."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from i2f_deploy.errors import I2FError
from i2f_deploy.runtime import check_inputs
from i2f_deploy.runtime.options import OpenVinoOptions

PRECISIONS = {"f32": "f32", "bf16": "bf16", "default": None}
HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}


class OpenVinoRunner:
    def __init__(self, path: Path, threads: int | None, precision: str = "f32", kernels: str = "function-body",
                 options: OpenVinoOptions = OpenVinoOptions()) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise I2FError("backend openvino is not installed (pip install openvino)") from None
        from i2f_deploy.custom_ops.native import NativeLoadError
        from i2f_deploy.custom_ops.openvino import register

        if precision not in PRECISIONS:
            raise I2FError(f"unknown OpenVINO precision {precision!r}; choose from {', '.join(PRECISIONS)}")
        core = ov.Core()
        self.kernels = kernels  # "native" or "function-body" (runtime.kernel_path)
        if path.suffix == ".onnx":  # an IR (NNCF's int8 encoder) carries no custom ops
            try:
                register(core, str(path), native=kernels == "native")
            except NativeLoadError as error:
                raise I2FError(f"{error}; reinstall i2f-deploy to rebuild the native kernels, "
                               "or load with kernels='function-body'") from None
        config: dict[str, object] = {"PERFORMANCE_HINT": HINTS[options.performance_hint]}
        if options.streams:
            config["NUM_STREAMS"] = options.streams
        if PRECISIONS[precision]:
            config["INFERENCE_PRECISION_HINT"] = PRECISIONS[precision]
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.concurrent = False  # one infer request: one run at a time
        self.input_names = tuple(i.get_any_name() for i in self.compiled.inputs)
        self.output_names = tuple(o.get_any_name() for o in self.compiled.outputs)
        self.input_shapes = {i.get_any_name(): tuple(d.get_length() if d.is_static else None for d in i.get_partial_shape())
                             for i in self.compiled.inputs}

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_inputs(self.input_names, inputs)
        # share_inputs: the request reads the arrays in place (the run is synchronous) instead of
        # copying them first: a decoder's inputs at 1024 are some 80 MB of encoder features
        results = self.request.infer({name: inputs[name] for name in self.input_names}, share_inputs=True)
        return {name: np.array(results[output]) for name, output in zip(self.output_names, self.compiled.outputs)}
