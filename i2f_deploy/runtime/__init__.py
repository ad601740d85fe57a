"""Run exported graphs without torch: ``load(artifact_dir, part, backend)`` -> ``.run(inputs)``.

Imports numpy and the chosen backend only. The decoder's custom ops run their ONNX function
bodies, or the native kernels built at install (``kernels``): on OpenVINO through its extension,
on ONNX Runtime between the decoder's exported segments (``ort_segments``). Every runner's
``kernels`` says which.
"""

from __future__ import annotations

import logging
import os
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, overload

import numpy as np

from i2f_deploy.contract import IMAGE, REF_LABEL, Manifest
from i2f_deploy.errors import I2FError
from i2f_deploy.runtime.options import BackendOptions, OpenVinoOptions, OrtOptions

if TYPE_CHECKING:
    from i2f_deploy.runtime.decoder import DecoderRunner

BACKENDS = ("onnxruntime", "openvino")
KERNELS = ("auto", "native", "function-body")  # how the custom ops run; "auto": native where built


class GraphRunner(Protocol):
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    input_shapes: dict[str, tuple[int | None, ...]]
    kernels: str  # how its custom ops run: "native" or "function-body"
    concurrent: bool  # runs may overlap (calls from several threads at once); else callers serialise them

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def check_inputs(expected: tuple[str, ...], inputs: dict[str, np.ndarray]) -> None:
    missing = sorted(set(expected) - set(inputs))
    if missing:
        raise I2FError(f"missing inputs: {', '.join(missing)}")


def available_cpus() -> int:
    """CPUs this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_threads(threads: int | None, option: str = "threads") -> None:
    """Thread counts run from 1 to the available CPUs; ``None`` leaves the choice to the backend.
    More threads than CPUs only contend (ONNX Runtime would start them all)."""
    if threads is None:
        return
    limit = available_cpus()
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= limit:
        raise I2FError(f"{option} must be an integer from 1 to {limit} (the CPUs available), got {threads!r}")


@cache
def _say_function_bodies(backend: str, reason: str) -> None:
    name = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}[backend]
    logging.getLogger(__name__).warning("%s runs the custom ops' function bodies: %s", name, reason)


def native_unavailable(backend: str, segmented: bool = True) -> str | None:
    """Why ``backend`` cannot run the native kernels here (None: it can)."""
    from i2f_deploy.custom_ops.native import KERNELS_LIBRARY, OPENVINO_LIBRARY, library_dir

    if backend == "onnxruntime":
        if not (library_dir() / KERNELS_LIBRARY).is_file():
            return (f"{library_dir() / KERNELS_LIBRARY} was not built (no C++ compiler at install): "
                    "reinstall i2f-deploy with g++ and CMake present")
        if not segmented:
            return "the artifact has no decoder segments (exported before they existed): re-export it"
        return None
    if not (library_dir() / OPENVINO_LIBRARY).is_file():
        return (f"{library_dir() / OPENVINO_LIBRARY} was not built (no C++ compiler or OpenVINO at install): "
                "reinstall i2f-deploy with g++, CMake and openvino present")
    return None


def kernel_path(backend: str, kernels: str, segmented: bool = True) -> str:
    """"native" or "function-body": the path the custom ops take for a ``kernels`` request.
    ``segmented``: the artifact carries the decoder's segments (ONNX Runtime's native path)."""
    if kernels not in KERNELS:
        raise I2FError(f"unknown kernels {kernels!r}; choose from {', '.join(KERNELS)}")
    if kernels == "function-body":
        return kernels
    reason = native_unavailable(backend, segmented)
    if reason is None:
        return "native"
    if kernels == "native":
        raise I2FError(f"native kernels requested on {backend}, but {reason}")
    _say_function_bodies(backend, reason)
    return "function-body"


def read_manifest(artifact_dir: str | Path) -> Manifest:
    """The manifest of an artifact directory of this contract version (others are refused)."""
    return Manifest.read(artifact_dir)


def _check_target_size(graph: GraphRunner, manifest: Manifest, path: Path) -> None:
    """The manifest's target size is the one the graph was traced at (an edited manifest is not)."""
    size = manifest.target_size
    for name in (IMAGE, REF_LABEL):
        shape = graph.input_shapes.get(name)
        if shape is not None and tuple(shape[-2:]) != (size, size):
            raise I2FError(f"manifest.json says target_size {size}, but {path.name} takes {name} of "
                           f"{shape[-1]}x{shape[-2]}: the manifest was edited; re-export the artifact")


def _load_graph(path: Path, threads: int | None, precision: str, kernels: str, options: BackendOptions) -> GraphRunner:
    """The runner of ``options``' backend."""
    if isinstance(options, OrtOptions):
        from i2f_deploy.runtime.ort_backend import OrtRunner

        return OrtRunner(path, threads, options)
    from i2f_deploy.runtime.openvino_backend import OpenVinoRunner

    return OpenVinoRunner(path, threads, precision, kernels, options)


@overload
def load(artifact_dir: str | Path, part: Literal["decoder"], backend: str = ..., threads: int | None = ..., precision: str | None = ...,
         *, options: BackendOptions | None = ..., verify: bool = ..., kernels: str = ...) -> DecoderRunner: ...


@overload
def load(artifact_dir: str | Path, part: str, backend: str = ..., threads: int | None = ..., precision: str | None = ...,
         *, options: BackendOptions | None = ..., verify: bool = ..., kernels: str = ...) -> GraphRunner: ...


def load(
    artifact_dir: str | Path,
    part: str,
    backend: str = "onnxruntime",
    threads: int | None = None,
    precision: str | None = None,
    *,
    options: BackendOptions | None = None,
    verify: bool = True,
    kernels: str = "auto",
) -> GraphRunner:
    """Load ``part`` ("encoder" or "decoder") of an export on ``backend``.

    The decoder runs on the encoder's outputs, or on the five official features alone (it then
    derives the rest; see :class:`i2f_deploy.runtime.decoder.DecoderRunner`).

    ``threads=None`` lets the backend choose. ``precision`` is OpenVINO's inference precision
    ("f32" for parity; "bf16" or "default" for its reduced-precision speed); ``None`` takes the
    export's (``export --precision``: bf16 parts run with bf16, the rest f32). An int8 part is
    its quantized graph on either backend: the QDQ ONNX on ONNX Runtime, NNCF's IR on OpenVINO.
    ``options`` tunes the backend (``runtime.options``: ``OrtOptions`` or ``OpenVinoOptions``, of
    ``backend``; None: its defaults); ``verify`` checks the part's files against the manifest's
    sizes and SHA-256 first (a second or less; pass False once a product has verified its copy).
    ``kernels`` ("auto", "native" or "function-body") chooses how the custom ops run; "auto" takes
    the native kernels where they were built (and, on ONNX Runtime, where the artifact carries the
    decoder's segments) and logs a warning where not; the runner's ``kernels`` says which ran.
    The encoder has no custom ops: on ONNX Runtime it runs as it is whatever ``kernels`` says.
    """
    if backend not in BACKENDS:
        raise I2FError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    check_threads(threads)
    manifest = read_manifest(artifact_dir)
    files = manifest.part(part)
    if verify:
        manifest.verify(artifact_dir, (part,))
    exported = manifest.precision.part(part).on(backend)
    if precision is None:
        precision = "bf16" if exported == "bf16" else "f32"
    if options is None:
        options = OrtOptions() if backend == "onnxruntime" else OpenVinoOptions()
    if options.backend != backend:
        raise I2FError(f"options for {options.backend} given to backend {backend}")
    if backend == "onnxruntime" and part == "encoder":
        kernels = "function-body"
    path = kernel_path(backend, kernels, segmented=files.segments is not None)
    graph_options = (threads, precision, path, options)
    graph_file = files.onnx
    if backend == "openvino" and exported == "int8":
        graph_file = str(files.openvino)
    if backend == "onnxruntime" and path == "native":
        from i2f_deploy.runtime.ort_segments import OrtSegmentedRunner

        graph_file = (files.segments or [])[0]
        graph: GraphRunner = OrtSegmentedRunner(Path(artifact_dir) / graph_file, threads, options)  # type: ignore[arg-type]
    else:
        graph = _load_graph(Path(artifact_dir) / graph_file, *graph_options)
    _check_target_size(graph, manifest, Path(artifact_dir) / graph_file)
    if part == "encoder":
        return graph
    from i2f_deploy.runtime.decoder import DecoderRunner

    edge_conv = Path(artifact_dir) / str(files.edge_conv)
    return DecoderRunner(graph, lambda: _load_graph(edge_conv, *graph_options))
