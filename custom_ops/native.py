"""The native kernels built from ``cpp/`` at install: where they are, and the direct calls tests use.

Two libraries sit in ``lib/`` next to this module (or in ``$I2F_NATIVE_LIB_DIR``):
``libi2f_openvino.so``, OpenVINO's extension (``core.add_extension``), and ``libi2f_kernels.so``,
one C entry point per kernel. Either is absent when the install had no C++ compiler (or, for the
first, no OpenVINO); the function bodies then serve every op, and the runtime says so.
Imports numpy and ctypes only.
"""

from __future__ import annotations

import ctypes
import os
from functools import cache
from pathlib import Path

import numpy as np

LIB_DIR_VARIABLE = "I2F_NATIVE_LIB_DIR"
OPENVINO_LIBRARY = "libi2f_openvino.so"
KERNELS_LIBRARY = "libi2f_kernels.so"
OPENVINO_OPS = ("DLUUpsample",)  # what cpp/openvino/extension.cpp registers
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
    library.i2f_dlu_upsample.argtypes = [pointer] * 9 + [int64, int64, pointer, int64, ctypes.c_char_p, int64]
    library.i2f_dlu_upsample.restype = ctypes.c_int
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


def dlu_upsample(mixed: np.ndarray, edge_map: np.ndarray, edge_term: np.ndarray, edge_weight: np.ndarray,
                 box: np.ndarray, channels: int) -> np.ndarray:
    """``DLUUpsample`` on one thread through the C entry point (tests call the arithmetic so)."""
    floats = [_array(x, np.float32) for x in (mixed, edge_map, edge_term, edge_weight)]
    box = _array(box, np.int64)
    if box.ndim != 1:
        raise NativeKernelError(f"DLUUpsample: box must have rank 1, got shape {list(box.shape)}")
    shapes = [_shape(x) for x in floats]
    # sized from mixed only when it agrees with channels (else the kernel refuses before writing)
    fits = mixed.shape[1] == 9 * channels and min(mixed.shape[-2:]) > 4
    y = np.empty((1, channels, 2 * (mixed.shape[-2] - 4), 2 * (mixed.shape[-1] - 4)) if fits else 0, np.float32)
    error = ctypes.create_string_buffer(ERROR_SIZE)
    arguments = []
    for shape, data in zip(shapes, floats):
        arguments += [shape.ctypes.data, data.ctypes.data]
    status = kernels().i2f_dlu_upsample(*arguments, box.ctypes.data, box.size, channels, y.ctypes.data, y.size, error, ERROR_SIZE)
    if status != 0:
        raise NativeKernelError(error.value.decode())
    return y
