"""Lossless packing of the interactive loop's state: the prompt map and the target-size logits.

Undo/redo histories and the server's click-state cache keep many states, and a click packs one,
so the codec must be small and fast. Zstandard at level 1 does both:

* the prompt map (uint8 [1, 1, S, S], a few large regions of five values) as runs: the run
  lengths' four byte planes (uint32) then the runs' values, zstd'ed: about 18 kB at 1024;
* the logits (float32 [1, 1, S, S]) as their four byte planes (all the bytes of one
  significance together: the sign and exponent bytes compress, the low mantissa bytes hardly),
  zstd'ed: about 0.7x raw.

Against zlib level 1 of the same layouts (the codec it replaced) on a 1024 state of the
base model: the logits pack about 4.5x faster at the same size (0.99x) and unpack 1.6x faster;
the map packs 4.5x faster and 0.85x the size (and 0.4x the size of zlib of the raw map, the
server's click-state cache).
Unpacking checks the sizes and values, so a corrupt buffer raises ``I2FError`` instead of
returning a wrong state.
"""

from __future__ import annotations

import threading

import numpy as np
import zstandard

from i2f_deploy.errors import I2FError, InputError
from i2f_deploy.prompt_map import validate_prompt_map

__all__ = ["pack_logits", "pack_prompt_map", "unpack_logits", "unpack_prompt_map"]

LEVEL = 1  # zstd's fastest regular level: its ratio here equals zlib's, at several times its speed

_contexts = threading.local()  # zstd contexts are not thread-safe: one pair per thread


def _compress(data: bytes | np.ndarray) -> bytes:
    if not hasattr(_contexts, "compressor"):
        _contexts.compressor = zstandard.ZstdCompressor(level=LEVEL)
    # a copy: zstandard's result keeps its whole output buffer (the input's size) allocated,
    # so a kept state would hold about its raw size, not its packed size
    return bytes(memoryview(_contexts.compressor.compress(data)))


def _decompress(packed: bytes, limit: int, what: str) -> np.ndarray:
    """The bytes of a packed buffer as uint8 (at most ``limit``), or ``I2FError`` naming ``what``."""
    if not hasattr(_contexts, "decompressor"):
        _contexts.decompressor = zstandard.ZstdDecompressor()
    try:
        if zstandard.frame_content_size(packed) > limit:  # what a corrupt header might claim
            raise I2FError(f"corrupt packed {what}: it claims more than {limit} bytes")
        data = _contexts.decompressor.decompress(packed, max_output_size=limit)
    except zstandard.ZstdError as error:
        raise I2FError(f"corrupt packed {what}: {error}") from None
    return np.frombuffer(data, np.uint8)


def _check_size(size: int) -> int:
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size <= 0:
        raise InputError(f"state size must be a positive integer, got {size!r}")
    return int(size)


def pack_prompt_map(ref_label: np.ndarray) -> bytes:
    """A prompt map (uint8 [1, 1, S, S], values 0..4) as zstd'ed runs."""
    flat = np.ascontiguousarray(validate_prompt_map(ref_label)).reshape(-1)
    starts = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    lengths = np.diff(starts, prepend=0, append=flat.size).astype("<u4")
    planes = lengths.view(np.uint8).reshape(-1, 4).T  # byte planes: the high ones are mostly 0
    return _compress(np.ascontiguousarray(planes).tobytes() + flat[np.r_[0, starts]].tobytes())


def unpack_prompt_map(packed: bytes, size: int) -> np.ndarray:
    """The prompt map ``pack_prompt_map`` packed, uint8 [1, 1, size, size] (a new array)."""
    size = _check_size(size)
    # At most one run a pixel, 5 bytes a run.
    data = _decompress(packed, 5 * size * size, "prompt map")
    count = data.size // 5
    lengths = np.ascontiguousarray(data[:4 * count].reshape(4, count).T).view("<u4").reshape(-1)
    values = data[4 * count:]
    if data.size % 5 or int(lengths.sum(dtype=np.int64)) != size * size or values.max(initial=0) > 4:
        raise I2FError(f"corrupt packed prompt map: its runs do not make a {size}x{size} map of values 0..4")
    return np.repeat(values, lengths).reshape(1, 1, size, size)


def pack_logits(logits: np.ndarray) -> bytes:
    """Logits (float32 [1, 1, S, S] or [S, S]) as their zstd'ed byte planes, bit for bit (NaN
    payloads and -0.0 included)."""
    if not isinstance(logits, np.ndarray) or logits.dtype != np.float32:
        raise InputError("logits to pack must be a float32 numpy array")
    if logits.ndim not in (2, 4) or logits.shape[-1] != logits.shape[-2] or logits.size != logits.shape[-1] ** 2 \
            or logits.size == 0:
        raise InputError(f"logits to pack must have shape [1, 1, S, S] or [S, S], got {list(logits.shape)}")
    planes = np.ascontiguousarray(logits.astype("<f4", copy=False).reshape(-1).view(np.uint8).reshape(-1, 4).T)
    return _compress(planes)


def unpack_logits(packed: bytes, size: int) -> np.ndarray:
    """The logits ``pack_logits`` packed, float32 [1, 1, size, size] (a new array)."""
    size = _check_size(size)
    data = _decompress(packed, 4 * size * size, "logits")
    if data.size != 4 * size * size:
        raise I2FError(f"corrupt packed logits: {data.size} bytes where {4 * size * size} were expected")
    planes = data.reshape(4, -1)
    return np.ascontiguousarray(planes.T).view("<f4").astype(np.float32, copy=False).reshape(1, 1, size, size)
