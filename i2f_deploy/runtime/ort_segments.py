"""ONNX Runtime with the native kernels: the decoder's segments (``contract.SegmentPlan``) run as
sessions, the custom ops' C entries (``custom_ops.native``) between them.

ONNX Runtime's wheel ships no C API headers, so its custom-op interface is out of reach; this
path keeps every tensor where it was made instead: a segment's outputs stay ONNX Runtime's
(``io_binding``, no copy out), the kernels read them in place and write into buffers kept from
click to click (a new 16 MB array costs its page faults every click), and the next segment is
bound to those buffers. The kernels run on the runner's thread count (the caller and a pool of
``threads - 1`` sleeping workers in the kernel library).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from i2f_deploy.contract import SegmentPlan, SegmentStep
from i2f_deploy.errors import I2FError
from i2f_deploy.runtime import available_cpus, check_inputs
from i2f_deploy.runtime.options import OrtOptions

_DTYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
           "tensor(int32)": np.int32}


class _Held:
    """numpy's view of an ONNX Runtime tensor, which it keeps alive (no copy)."""

    def __init__(self, value: object, dtype: type) -> None:
        self.value = value
        self.__array_interface__ = {"data": (value.data_ptr(), False), "shape": tuple(value.shape()),  # type: ignore[attr-defined]
                                    "typestr": np.dtype(dtype).str, "version": 3}


def _as_array(value: object) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    dtype = _DTYPES[value.data_type()]  # type: ignore[attr-defined]
    shape = tuple(value.shape())  # type: ignore[attr-defined]
    if 0 in shape:
        return np.empty(shape, dtype)
    return np.asarray(_Held(value, dtype))


def _kernel(step: SegmentStep, constants: dict[str, np.ndarray], threads: int) -> Callable[..., list[np.ndarray]]:
    """The call of the step's kernel: (inputs in the node's order, attributes, threads, allocate) ->
    outputs. HybridMoE's weights, constants of the plan, are packed here once for every click."""
    from i2f_deploy.custom_ops import native

    op = str(step.op)
    if op == "HybridMoE" and all(name in constants for name in step.inputs[2:]):
        a = step.attributes
        packed = native.HybridMoeWeights([constants[name] for name in step.inputs[2:]], a["num_experts"], a["epsilon"], threads=threads)
        return lambda x, a, threads, allocate: [packed(x[0], x[1], threads=threads, allocate=allocate)]
    if op == "PromptConvolution":
        return lambda x, a, threads, allocate: [native.prompt_convolution(x[0], x[1], list(x[2:]), threads=threads, allocate=allocate)]
    if op == "DLUUpsample":
        return lambda x, a, threads, allocate: [native.dlu_upsample(*x, a["channels"], threads=threads, allocate=allocate)]
    if op == "TokenRouting":
        return lambda x, a, threads, allocate: list(native.token_routing(x[0], a["stride"], a["kernel_size"], threads=threads,
                                                                         allocate=allocate))
    if op == "BSQAttention":
        return lambda x, a, threads, allocate: [native.bsq_attention(*x, a["scale"], a["code_size"], threads=threads, allocate=allocate)]
    if op == "FullAttention":
        return lambda x, a, threads, allocate: [native.full_attention(*x, a["scale"], threads=threads, allocate=allocate)]
    if op == "HybridMoE":
        return lambda x, a, threads, allocate: [native.hybrid_moe(x[0], x[1], list(x[2:]), a["num_experts"], a["epsilon"],
                                                                  threads=threads, allocate=allocate)]
    raise I2FError(f"the segment plan names op {op!r}, which has no native kernel here; re-export the artifact")


class _Buffers:
    """One step's output buffers, kept from run to run while their shapes hold."""

    def __init__(self) -> None:
        self.kept: dict[int, np.ndarray] = {}
        self.next = 0

    def allocate(self, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        slot, self.next = self.next, self.next + 1
        buffer = self.kept.get(slot)
        if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
            buffer = self.kept[slot] = np.empty(shape, dtype)
        return buffer


class OrtSegmentedRunner:
    """The decoder on ONNX Runtime with the custom ops' native kernels; ``kernels`` is "native"."""

    def __init__(self, plan_path: Path, threads: int | None, options: OrtOptions = OrtOptions()) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise I2FError("backend onnxruntime is not installed (pip install onnxruntime)") from None
        from i2f_deploy.custom_ops.native import NativeKernelError, kernels

        try:
            kernels()
        except (FileNotFoundError, OSError) as error:
            raise I2FError(f"the native kernels do not load ({error}); reinstall i2f-deploy, "
                           "or load with kernels='function-body'") from None
        plan = SegmentPlan.read(plan_path)
        folder = plan_path.parent
        with np.load(folder / plan.constants, allow_pickle=False) as constants:
            self.constants = {name: np.array(constants[name], order="C") for name in constants.files}  # 0-d ones stay 0-d
        session_options = ort.SessionOptions()
        if threads:
            session_options.intra_op_num_threads = threads
            session_options.inter_op_num_threads = 1
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.spinning else "0")
        # spin within a segment, but not past its end, where the kernels take the cores
        session_options.add_session_config_entry("session.force_spinning_stop", "1")
        self.threads = threads or available_cpus()  # the kernels' threads: the runner's count
        self.steps: list[tuple[SegmentStep, object, Callable[..., list[np.ndarray]] | None]] = []
        self._input_types: dict[str, dict[str, type]] = {}
        for step in plan.steps:
            if step.graph is not None:
                session = ort.InferenceSession(str(folder / step.graph), session_options, providers=["CPUExecutionProvider"])
                self._input_types[step.graph] = {i.name: _DTYPES[i.type] for i in session.get_inputs()}
                self.steps.append((step, session, None))
            else:
                try:
                    self.steps.append((step, None, _kernel(step, self.constants, self.threads)))
                except NativeKernelError as error:
                    raise I2FError(f"the segment plan's {step.op} does not fit its kernel: {error}") from None
        self._buffers = [_Buffers() for _ in plan.steps]
        self.kernels = "native"
        self.concurrent = False  # the kernels' output buffers are reused from run to run
        self.input_names = tuple(plan.inputs)
        self.output_names = tuple(plan.outputs)
        self.input_shapes = {name: tuple(d if d >= 0 else None for d in spec.shape) for name, spec in plan.inputs.items()}
        self._input_dtypes = {name: np.dtype(spec.dtype) for name, spec in plan.inputs.items()}
        self.step_ms: list[float] | None = None  # set to a list to collect each step's time (bench --profile)

    def _checked(self, inputs: dict[str, np.ndarray]) -> dict[str, object]:
        check_inputs(self.input_names, inputs)
        values: dict[str, object] = {}
        for name in self.input_names:
            array = inputs[name]
            if not isinstance(array, np.ndarray) or array.dtype != self._input_dtypes[name]:
                got = getattr(array, "dtype", type(array).__name__)
                raise I2FError(f"input {name} must be a numpy array of {self._input_dtypes[name]}, got {got}")
            expected = self.input_shapes[name]
            if array.ndim != len(expected) or any(e is not None and e != s for e, s in zip(expected, array.shape)):
                raise I2FError(f"input {name} has shape {list(array.shape)}, expected {list(expected)}")
            values[name] = np.ascontiguousarray(array)
        return values

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = {**self.constants, **self._checked(inputs)}
        timings: list[float] = []
        for (step, session, kernel), buffers in zip(self.steps, self._buffers):
            start = time.perf_counter()
            if kernel is not None:
                buffers.next = 0
                outputs = kernel([_as_array(values[name]) for name in step.inputs], step.attributes, self.threads, buffers.allocate)
                values.update(zip(step.outputs, outputs))
            else:
                values.update(zip(step.outputs, self._run_segment(step, session, values)))
            timings.append((time.perf_counter() - start) * 1000)
        if self.step_ms is not None:
            self.step_ms = timings
        # the next run overwrites the kept buffers; the constants are the runner's own
        shared = {id(b) for buffers in self._buffers for b in buffers.kept.values()} | {id(c) for c in self.constants.values()}
        return {name: _as_array(values[name]).copy() if id(values[name]) in shared else _as_array(values[name])
                for name in self.output_names}

    def _run_segment(self, step: SegmentStep, session: object, values: dict[str, object]) -> list[object]:
        binding = session.io_binding()  # type: ignore[attr-defined]
        types = self._input_types[str(step.graph)]
        for name in step.inputs:
            value = values[name]
            if isinstance(value, np.ndarray):
                if value.dtype != types[name]:
                    raise I2FError(f"segment {step.graph} takes {name} as {np.dtype(types[name])}, got {value.dtype}")
                binding.bind_input(name, "cpu", 0, value.dtype, list(value.shape), value.ctypes.data)
            else:
                binding.bind_ortvalue_input(name, value)
        for name in step.outputs:
            binding.bind_output(name, "cpu")  # ONNX Runtime allocates; kept as it is (no copy)
        session.run_with_iobinding(binding)  # type: ignore[attr-defined]
        return list(binding.get_outputs())
