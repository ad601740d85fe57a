"""The native kernels built from ``cpp/`` at install: where they are, and the direct calls tests use.

Two libraries sit in ``lib/`` next to this module (or in ``$I2F_NATIVE_LIB_DIR``):
``libi2f_openvino.so``, OpenVINO's extension (``core.add_extension``), and ``libi2f_kernels.so``,
one C entry point per kernel (tests, ONNX Runtime's segmented decoder, ``runtime/ort_segments.py``,
and the logits' upsampling to the image, ``preprocess.py``). Either is absent when the install had no C++ compiler (or, for the
first, no OpenVINO); the function bodies then serve every op, and the runtime says so.
Imports numpy and ctypes only.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np

LIB_DIR_VARIABLE = "I2F_NATIVE_LIB_DIR"
OPENVINO_LIBRARY = "libi2f_openvino.so"
KERNELS_LIBRARY = "libi2f_kernels.so"
# what cpp/openvino/extension.cpp registers
OPENVINO_OPS = ("DLUUpsample", "TokenRouting", "BSQAttention", "FullAttention", "HybridMoE", "PromptConvolution")
ERROR_SIZE = 512


class NativeKernelError(ValueError):
    """A kernel refused its inputs (the message is the kernel's one-line reason)."""


class NativeLoadError(RuntimeError):
    """A native library is there but does not load (built for another OpenVINO, or damaged)."""


def library_dir() -> Path:
    return Path(os.environ.get(LIB_DIR_VARIABLE) or Path(__file__).parent / "lib")


def openvino_extension() -> Path | None:
    """The OpenVINO extension library, or None when it was not built."""
    path = library_dir() / OPENVINO_LIBRARY
    return path if path.is_file() else None


@cache
def _kernels(path: Path) -> ctypes.CDLL:
    library = ctypes.CDLL(str(path))
    pointer, int64 = ctypes.c_void_p, ctypes.c_int64
    # every entry ends with (threads, error, error_size)
    library.i2f_dlu_upsample.argtypes = [pointer] * 9 + [int64, int64, pointer, int64, int64, ctypes.c_char_p, int64]
    library.i2f_dlu_upsample.restype = ctypes.c_int
    library.i2f_token_routing.argtypes = [pointer, pointer, int64, int64, pointer, int64, pointer, pointer, int64, ctypes.c_char_p,
                                             int64]
    library.i2f_token_routing.restype = ctypes.c_int
    library.i2f_bsq_attention.argtypes = [pointer] * 8 + [int64, pointer, pointer, pointer, ctypes.c_float, int64, pointer, int64,
                                                          int64, ctypes.c_char_p, int64]
    library.i2f_bsq_attention.restype = ctypes.c_int
    library.i2f_full_attention.argtypes = [pointer] * 6 + [int64] + [pointer] * 5 + [ctypes.c_float, pointer, int64, int64, ctypes.c_char_p,
                                                                               int64]
    library.i2f_full_attention.restype = ctypes.c_int
    library.i2f_prompt_convolution.argtypes = [pointer] * 8 + [pointer, int64, int64, ctypes.c_char_p, int64]
    library.i2f_prompt_convolution.restype = ctypes.c_int
    library.i2f_hybrid_moe.argtypes = [pointer, pointer, pointer, int64, ctypes.c_float, pointer, int64, int64, ctypes.c_char_p, int64]
    library.i2f_hybrid_moe.restype = ctypes.c_int
    library.i2f_hybrid_moe_pack.argtypes = [pointer, pointer, pointer, int64, ctypes.c_float, pointer, int64, ctypes.c_char_p, int64]
    library.i2f_hybrid_moe_pack.restype = ctypes.c_int
    library.i2f_hybrid_moe_packed.argtypes = [pointer, pointer, pointer, int64, pointer, pointer, int64, int64, ctypes.c_char_p, int64]
    library.i2f_hybrid_moe_packed.restype = ctypes.c_int
    taps = [int64] + [pointer] * 4  # outputs along the axis; index0, index1, weight0, weight1
    for entry in (library.i2f_bilinear_upsample, library.i2f_bilinear_upsample_mask):
        entry.argtypes = [pointer, pointer, *taps, *taps, pointer, int64, int64, ctypes.c_char_p, int64]
        entry.restype = ctypes.c_int
    library.i2f_hybrid_moe_free.argtypes = [pointer, ctypes.c_char_p, int64]
    library.i2f_hybrid_moe_free.restype = ctypes.c_int
    return library


def kernels() -> ctypes.CDLL:
    """``libi2f_kernels``; FileNotFoundError when it was not built."""
    path = library_dir() / KERNELS_LIBRARY
    if not path.is_file():
        raise FileNotFoundError(f"{path} was not built (no C++ compiler at install?)")
    return _kernels(path)


def _array(value: np.ndarray, dtype: type) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.dtype != dtype:
        raise NativeKernelError(f"expected a numpy array of {np.dtype(dtype)}, got {getattr(value, 'dtype', type(value).__name__)}")
    return np.ascontiguousarray(value)


def _shape(array: np.ndarray) -> np.ndarray:
    if array.ndim != 4:
        raise NativeKernelError(f"DLUUpsample: expected a rank-4 tensor, got shape {list(array.shape)}")
    return np.asarray(array.shape, np.int64)


Allocate = Callable[[tuple[int, ...], type], np.ndarray]  # (shape, dtype) -> an output buffer, like np.empty


def _output(allocate: Allocate, shape: tuple[int, ...] | int, dtype: type) -> np.ndarray:
    """An output buffer from ``allocate`` (a caller may hand out buffers it reuses), checked."""
    wanted = (shape,) if isinstance(shape, int) else tuple(shape)
    out = allocate(wanted, dtype)
    if out.shape != wanted or out.dtype != dtype or not out.flags.c_contiguous or not out.flags.writeable:
        raise NativeKernelError(f"an output buffer must be a writable contiguous {np.dtype(dtype)} array of shape {list(wanted)}, "
                                f"got {out.dtype} {list(out.shape)}")
    return out


def dlu_upsample(mixed: np.ndarray, edge_map: np.ndarray, edge_term: np.ndarray, edge_weight: np.ndarray,
                 box: np.ndarray, channels: int, *, threads: int = 1, allocate: Allocate = np.empty) -> np.ndarray:
    """``DLUUpsample`` through the C entry point on ``threads`` threads; outputs from ``allocate``."""
    floats = [_array(x, np.float32) for x in (mixed, edge_map, edge_term, edge_weight)]
    box = _array(box, np.int64)
    if box.ndim != 1:
        raise NativeKernelError(f"DLUUpsample: box must have rank 1, got shape {list(box.shape)}")
    shapes = [_shape(x) for x in floats]
    # sized from mixed only when it agrees with channels (else the kernel refuses before writing)
    fits = mixed.shape[1] == 9 * channels and min(mixed.shape[-2:]) > 4
    y = _output(allocate, (1, channels, 2 * (mixed.shape[-2] - 4), 2 * (mixed.shape[-1] - 4)) if fits else 0, np.float32)
    error = ctypes.create_string_buffer(ERROR_SIZE)
    arguments = []
    for shape, data in zip(shapes, floats):
        arguments += [shape.ctypes.data, data.ctypes.data]
    status = kernels().i2f_dlu_upsample(*arguments, box.ctypes.data, box.size, channels, y.ctypes.data, y.size, threads, error,
                                             ERROR_SIZE)
    if status != 0:
        raise NativeKernelError(error.value.decode())
    return y


def _call(entry: str, *arguments: object, threads: int) -> None:
    error = ctypes.create_string_buffer(ERROR_SIZE)
    if getattr(kernels(), entry)(*arguments, threads, error, ERROR_SIZE) != 0:
        raise NativeKernelError(error.value.decode())


def _ranked(op: str, name: str, value: np.ndarray, dtype: type, rank: int) -> np.ndarray:
    array = _array(value, dtype)
    if array.ndim != rank:
        raise NativeKernelError(f"{op}: {name} must have rank {rank}, got shape {list(array.shape)}")
    return array


Taps = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # one axis: index0, index1 (int64), weight0, weight1 (float32)


def _taps(axis: str, taps: Taps) -> list[np.ndarray]:
    if len(taps) != 4:
        raise NativeKernelError(f"BilinearUpsample: the {axis} taps must be (index0, index1, weight0, weight1), got {len(taps)} arrays")
    arrays = [_ranked("BilinearUpsample", f"{axis} {name}", value, dtype, 1)
              for name, value, dtype in zip(("index0", "index1", "weight0", "weight1"), taps, (np.int64, np.int64, np.float32, np.float32))]
    if len({a.size for a in arrays}) != 1:
        raise NativeKernelError(f"BilinearUpsample: the {axis} taps differ in length: {[a.size for a in arrays]}")
    return arrays


def bilinear_upsample(x: np.ndarray, rows: Taps, cols: Taps, *, mask: bool = False, threads: int = 1,
                      allocate: Allocate = np.empty) -> np.ndarray:
    """float32 x [h, w] bilinear on the given taps (``preprocess._axis_weights``) to [rows, cols],
    NumPy's float32 rounding to the bit; ``mask``: the bool ``> 0`` of it, without the float image.
    On ``threads`` threads; outputs from ``allocate``."""
    x = _ranked("BilinearUpsample", "x", x, np.float32, 2)
    row_taps, col_taps = _taps("row", rows), _taps("column", cols)
    shape = np.asarray(x.shape, np.int64)
    out = _output(allocate, (row_taps[0].size, col_taps[0].size), np.bool_ if mask else np.float32)
    arguments: list[object] = [shape.ctypes.data, x.ctypes.data]
    for taps in (row_taps, col_taps):
        arguments += [taps[0].size, *(a.ctypes.data for a in taps)]
    _call("i2f_bilinear_upsample_mask" if mask else "i2f_bilinear_upsample", *arguments, out.ctypes.data, out.size, threads=threads)
    return out


def token_routing(ref_label: np.ndarray, stride: int, kernel_size: int, *, threads: int = 1,
                  allocate: Allocate = np.empty) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``TokenRouting`` on ``threads`` threads: (token_order, num_routed, dpe_box) as the graph gives
    them; outputs from ``allocate``."""
    label = _ranked("TokenRouting", "ref_label", ref_label, np.uint8, 4)
    shape = np.asarray(label.shape, np.int64)
    tokens = (label.shape[2] // stride) * (label.shape[3] // stride) if stride > 0 else 0
    order, count, box = (_output(allocate, wanted, np.int64) for wanted in (tokens, (), 4))
    _call("i2f_token_routing", shape.ctypes.data, label.ctypes.data, stride, kernel_size, order.ctypes.data, order.size,
          count.ctypes.data, box.ctypes.data, threads=threads)
    return order, count, box


def bsq_attention(query: np.ndarray, key: np.ndarray, value: np.ndarray, code_weight: np.ndarray, code_bias: np.ndarray,
                  code_keys: np.ndarray, scale: float, code_size: int, *, threads: int = 1, allocate: Allocate = np.empty) -> np.ndarray:
    """``BSQAttention`` through the C entry point on ``threads`` threads; outputs from ``allocate``."""
    op = "BSQAttention"
    matrices = [_ranked(op, name, x, np.float32, 2) for name, x in
                (("query", query), ("key", key), ("value", value), ("code_weight", code_weight), ("code_keys", code_keys))]
    bias = _ranked(op, "code_bias", code_bias, np.float32, 1)
    query, key, value, code_weight, code_keys = matrices
    shapes = [np.asarray(x.shape, np.int64) for x in matrices]
    output = _output(allocate, query.shape, np.float32)
    arguments = []
    for shape, data in zip(shapes[:4], matrices[:4]):
        arguments += [shape.ctypes.data, data.ctypes.data]
    _call("i2f_bsq_attention", *arguments, bias.size, bias.ctypes.data, shapes[4].ctypes.data, code_keys.ctypes.data, scale,
          code_size, output.ctypes.data, output.size, threads=threads)
    return output


def full_attention(query: np.ndarray, key: np.ndarray, value: np.ndarray, query_tokens: np.ndarray, rope_cos: np.ndarray,
                   rope_sin: np.ndarray, scale: float, *, threads: int = 1, allocate: Allocate = np.empty) -> np.ndarray:
    """``FullAttention`` through the C entry point on ``threads`` threads; outputs from ``allocate``."""
    op = "FullAttention"
    matrices = [_ranked(op, name, x, np.float32, 2) for name, x in
                (("query", query), ("key", key), ("value", value), ("rope_cos", rope_cos), ("rope_sin", rope_sin))]
    tokens = _ranked(op, "query_tokens", query_tokens, np.int64, 1)
    shapes = [np.asarray(x.shape, np.int64) for x in matrices]
    output = _output(allocate, matrices[0].shape, np.float32)
    arguments = []
    for shape, data in zip(shapes[:3], matrices[:3]):
        arguments += [shape.ctypes.data, data.ctypes.data]
    arguments += [tokens.size, tokens.ctypes.data]
    for shape, data in zip(shapes[3:], matrices[3:]):
        arguments += [shape.ctypes.data, data.ctypes.data]
    _call("i2f_full_attention", *arguments, scale, output.ctypes.data, output.size, threads=threads)
    return output


PROMPT_LAYERS = 4  # prompt_convolution.LAYERS (not imported: this module needs numpy and ctypes only)


def prompt_convolution(labels: np.ndarray, table: np.ndarray, weights: list[np.ndarray], *, threads: int = 1,
                       allocate: Allocate = np.empty) -> np.ndarray:
    """``PromptConvolution`` through the C entry point on ``threads`` threads (``weights`` in
    ``prompt_convolution.WEIGHTS`` order: weight1, bias1, ... bias4); outputs from ``allocate``."""
    op = "PromptConvolution"
    label = _ranked(op, "labels", labels, np.uint8, 2)
    rows = _ranked(op, "table", table, np.float32, 2)
    if len(weights) != 2 * PROMPT_LAYERS:
        raise NativeKernelError(f"{op}: expected {2 * PROMPT_LAYERS} weights (weight1, bias1, ... bias4), got {len(weights)}")
    filters = [_ranked(op, f"weight{layer + 1}", w, np.float32, 4) for layer, w in enumerate(weights[::2])]
    biases = [_ranked(op, f"bias{layer + 1}", b, np.float32, 1) for layer, b in enumerate(weights[1::2])]
    label_shape, table_shape = np.asarray(label.shape, np.int64), np.asarray(rows.shape, np.int64)
    weight_shapes = np.asarray([w.shape for w in filters], np.int64)
    bias_sizes = np.asarray([b.size for b in biases], np.int64)
    height, width = label.shape
    for _ in range(PROMPT_LAYERS):
        height, width = (height + 1) // 2, (width + 1) // 2
    output = _output(allocate, (1, filters[-1].shape[0], height, width), np.float32)
    weight_data = (ctypes.c_void_p * PROMPT_LAYERS)(*(w.ctypes.data for w in filters))
    bias_data = (ctypes.c_void_p * PROMPT_LAYERS)(*(b.ctypes.data for b in biases))
    _call("i2f_prompt_convolution", label_shape.ctypes.data, label.ctypes.data, table_shape.ctypes.data, rows.ctypes.data,
          weight_shapes.ctypes.data, ctypes.cast(weight_data, ctypes.c_void_p), bias_sizes.ctypes.data,
          ctypes.cast(bias_data, ctypes.c_void_p), output.ctypes.data, output.size, threads=threads)
    return output


def _moe_tensors(op: str, tensors: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(ranks, dims [n, 3]) of tensors of rank at most 3."""
    if any(t.ndim > 3 for t in tensors):
        raise NativeKernelError(f"{op}: a tensor has rank above 3: {next(list(t.shape) for t in tensors if t.ndim > 3)}")
    ranks = np.asarray([t.ndim for t in tensors], np.int64)
    dims = np.zeros((len(tensors), 3), np.int64)
    for row, tensor in zip(dims, tensors):
        row[: tensor.ndim] = tensor.shape
    return ranks, dims


def hybrid_moe(x: np.ndarray, routed: np.ndarray, weights: list[np.ndarray], num_experts: int, epsilon: float, *,
               threads: int = 1, allocate: Allocate = np.empty) -> np.ndarray:
    """``HybridMoE`` through the C entry point on ``threads`` threads (``weights`` in
    ``hybrid_moe.WEIGHTS`` order, packed for this call only); outputs from ``allocate``."""
    op = "HybridMoE"
    tensors = [_array(x, np.float32), _array(routed, np.int64), *(_array(w, np.float32) for w in weights)]
    if len(tensors) != 23:
        raise NativeKernelError(f"{op}: expected x, routed and 21 weights, got {len(tensors)} tensors")
    ranks, dims = _moe_tensors(op, tensors)
    data = (ctypes.c_void_p * len(tensors))(*(t.ctypes.data for t in tensors))
    fits = tensors[0].ndim == 2
    y = _output(allocate, tensors[0].shape if fits else 0, np.float32)
    _call("i2f_hybrid_moe", ranks.ctypes.data, dims.ctypes.data, ctypes.cast(data, ctypes.c_void_p), num_experts, epsilon,
          y.ctypes.data, y.size, threads=threads)
    return y


class HybridMoeWeights:
    """One ``HybridMoE`` weight set packed once by the kernel (its own copy: later changes to
    ``weights`` do not reach it), then called per click with x and routed; freed with the object."""

    def __init__(self, weights: list[np.ndarray], num_experts: int, epsilon: float, *, threads: int = 1) -> None:
        op = "HybridMoE"
        tensors = [_array(w, np.float32) for w in weights]
        if len(tensors) != 21:
            raise NativeKernelError(f"{op}: expected 21 weights, got {len(tensors)}")
        ranks, dims = _moe_tensors(op, tensors)
        data = (ctypes.c_void_p * len(tensors))(*(t.ctypes.data for t in tensors))
        handle = ctypes.c_void_p()
        self._library = kernels()
        _call("i2f_hybrid_moe_pack", ranks.ctypes.data, dims.ctypes.data, ctypes.cast(data, ctypes.c_void_p), num_experts, epsilon,
              ctypes.byref(handle), threads=threads)
        self._handle: int | None = handle.value

    def __call__(self, x: np.ndarray, routed: np.ndarray, *, threads: int = 1, allocate: Allocate = np.empty) -> np.ndarray:
        """``HybridMoE``'s y on ``threads`` threads; outputs from ``allocate``."""
        x = _ranked("HybridMoE", "x", x, np.float32, 2)
        routed = _ranked("HybridMoE", "routed", routed, np.int64, 1)
        shape = np.asarray(x.shape, np.int64)
        y = _output(allocate, x.shape, np.float32)
        _call("i2f_hybrid_moe_packed", self._handle, shape.ctypes.data, x.ctypes.data, routed.size, routed.ctypes.data, y.ctypes.data,
              y.size, threads=threads)
        return y

    def __del__(self) -> None:
        if getattr(self, "_handle", None) is not None:
            self._library.i2f_hybrid_moe_free(self._handle, None, 0)
            self._handle = None
