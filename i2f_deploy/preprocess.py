"""Image in, encoder input out; decoder logits in, image-sized logits out (NumPy; see ``UPSAMPLING``).

Mirrors the official test path exactly, because the encoder was trained on it:

1. the official reads images with mmcv, i.e. **BGR**; an RGB input is therefore flipped first;
2. normalise with mean (123.675, 116.28, 103.53) and std (58.395, 57.12, 57.375) in BGR channel
   order as written (no swap: channel 0 = B uses 123.675);
3. pad bottom/right with 0 to a multiple of 256, then to a square (both after normalisation,
   so the padding is 0 in normalised units);
4. resize bilinearly to the target size with PyTorch's ``align_corners=False`` formula.

The inverse maps logits at the target size back to the padded square (same bilinear formula) and
crops the image. Clicks scale by ``target / padded_side`` with ``int()`` truncation.

The encoder input is rounded as PyTorch rounds it (bit for bit on the golden input). The logits'
inverse runs on every click, so it computes only the pixels the crop keeps, in float32 and in
cache-sized bands: within float32 rounding of PyTorch (the same mask wherever the logit is not
within rounding of 0), several times faster.

Which code runs that inverse is ``UPSAMPLING``: ``"native"`` when the native kernel library
(``custom_ops/native.py``, built at install with a C++ compiler) loads, else ``"numpy"``. Both
take the taps from ``_axis_weights`` and round every product and sum to float32 the same way, so
their results are the same bits; the native function is several times faster (it also writes the
mask without the float image).

The bilinear resize is implemented here rather than with ``cv2.resize``, whose coordinates and
weights differ from PyTorch's float32 computation (float32 logits 1024 -> 1536: up to 3e-3 apart,
the mask different at a few dozen pixels).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np

from i2f_deploy.errors import InputError
from i2f_deploy.prompt_map import Click, scale_click

__all__ = [
    "MEAN_BGR",
    "SIZE_DIVISOR",
    "STD_BGR",
    "UPSAMPLING",
    "Geometry",
    "geometry_for",
    "logits_to_image",
    "logits_to_mask",
    "preprocess",
    "read_image_rgb",
    "resize_bilinear",
    "to_target_click",
    "validate_image",
]

# Normalisation constants of the official config, applied to B, G, R in this order.
MEAN_BGR = np.array([123.675, 116.28, 103.53], dtype=np.float32)
STD_BGR = np.array([58.395, 57.12, 57.375], dtype=np.float32)
SIZE_DIVISOR = 256


@dataclass(frozen=True)
class Geometry:
    """Where an image of (height, width) sits in the encoder input of side ``target_size``."""

    height: int
    width: int
    padded_side: int
    target_size: int

    @property
    def scale(self) -> float:
        """Target size / padded side: the official ``scale_factor`` for clicks (a Python float)."""
        return self.target_size / self.padded_side


def _positive_int(value: Any, name: str) -> int:
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not is_int or value <= 0:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def geometry_for(height: int, width: int, target_size: int,
                 size_divisor: int = SIZE_DIVISOR) -> Geometry:
    """Geometry of an image: pad each side up to a multiple of ``size_divisor``, then square."""
    height = _positive_int(height, "image height")
    width = _positive_int(width, "image width")
    target_size = _positive_int(target_size, "target size")
    size_divisor = _positive_int(size_divisor, "size divisor")
    padded_h = -(-height // size_divisor) * size_divisor
    padded_w = -(-width // size_divisor) * size_divisor
    return Geometry(height, width, max(padded_h, padded_w), target_size)


def read_image_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 [H, W, 3] (grey and alpha images are converted)."""
    import cv2  # only here: the rest of this module is NumPy

    path = Path(path)
    if not path.is_file():
        raise InputError(f"image file not found: {path}")
    data = np.fromfile(path, dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None or bgr.size == 0:
        raise InputError(f"cannot read {path} as an image (unsupported or corrupt file)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def validate_image(image: Any) -> np.ndarray:
    """Check an image is a non-empty uint8 array of shape [H, W, 3]; returns it."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InputError(f"image must be uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"image must have shape [H, W, 3] (RGB), got {list(image.shape)}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(f"image is empty: shape {list(image.shape)}")
    return image


def _fma(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float32 ``a * b + c`` rounded once, like a hardware FMA.

    The float32 product is exact in float64; adding ``c`` there and rounding to float32 equals
    the FMA except in rare double-rounding ties (below float32 resolution either way).
    """
    return (a.astype(np.float64) * b.astype(np.float64) + c.astype(np.float64)).astype(np.float32)


def _axis_weights(in_size: int, out_size: int, valid: int, keep: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """PyTorch's bilinear (align_corners=False) taps along one axis, in float32.

    ``in_size`` is the logical input length, of which only the first ``valid`` entries hold data
    (the rest are zeros, i.e. padding): taps beyond ``valid`` get weight 0 and a clipped index,
    which gives the same result without building the padding. Only the first ``keep`` outputs
    are returned (a crop of the full resize).
    """
    one, half = np.float32(1.0), np.float32(0.5)
    scale = np.float32(in_size) / np.float32(out_size)
    dst = np.arange(keep, dtype=np.float32)
    # PyTorch's compiled kernel evaluates scale * (dst + 0.5) - 0.5 as one fused multiply-add.
    src = _fma(np.full_like(dst, scale), dst + half, np.full_like(dst, -half))
    src = np.maximum(src, np.float32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    lam1 = np.clip(src - i0.astype(np.float32), np.float32(0.0), one).astype(np.float32)
    lam0 = (one - lam1).astype(np.float32)
    i1 = i0 + (i0 < in_size - 1).astype(np.int64)
    lam0 = np.where(i0 < valid, lam0, np.float32(0.0)).astype(np.float32)
    lam1 = np.where(i1 < valid, lam1, np.float32(0.0)).astype(np.float32)
    return np.minimum(i0, valid - 1), np.minimum(i1, valid - 1), lam0, lam1


_Combine = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _combine_fma(v0: np.ndarray, w0: np.ndarray, v1: np.ndarray, w1: np.ndarray) -> np.ndarray:
    """``fma(v0, w0, v1 * w1)``: PyTorch's rounding (its ``t0 * w0 + t1 * w1`` is contracted
    into an FMA), exact to the bit at the cost of float64 temporaries."""
    return _fma(v0, w0, v1 * w1)


def _combine_float32(v0: np.ndarray, w0: np.ndarray, v1: np.ndarray, w1: np.ndarray) -> np.ndarray:
    """``v0 * w0 + v1 * w1`` in float32, in place on ``v0`` and ``v1`` (fresh gathers): apart
    from PyTorch's FMA by a float32 rounding of the inputs' magnitude at most in each of the two
    passes, at a fraction of ``_combine_fma``'s cost."""
    np.multiply(v0, w0, out=v0)
    np.multiply(v1, w1, out=v1)
    return np.add(v0, v1, out=v0)


def _resize(x: np.ndarray, in_h: int, in_w: int, out_h: int, out_w: int,
            keep_h: int, keep_w: int,
            prepare: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Bilinear resize of the last two axes of float32 ``x`` (zero-extended to in_h x in_w),
    returning the top-left keep_h x keep_w block of the out_h x out_w result, rounded as PyTorch
    rounds (``_combine_fma``).

    Width first, then height, each ``fma(v0, w0, v1 * w1)``: what PyTorch's multi-threaded CPU
    kernel computes here; on the golden input and at deployment sizes the results are
    bit-identical, elsewhere within float32 rounding (PyTorch itself changes the last bit with
    the thread count on small tensors).
    ``prepare`` is an element-wise map applied to the input rows actually read, so a large image
    is normalised only where the resize looks.
    """
    (out,) = _resize_bands(x, in_h, in_w, out_h, out_w, keep_h, keep_w, keep_h, _combine_fma, prepare)
    return out


def _resize_bands(x: np.ndarray, in_h: int, in_w: int, out_h: int, out_w: int, keep_h: int, keep_w: int,
                  band_rows: int, combine: _Combine,
                  prepare: Callable[[np.ndarray], np.ndarray] | None = None) -> Iterator[np.ndarray]:
    """``_resize`` as consecutive bands of at most ``band_rows`` output rows, each tap pair
    weighted by ``combine``: each output row depends only on its own two input rows, so the
    bands are the same numbers, and an upsampling to a large image never holds all of its float
    temporaries at once. Only the kept rows and columns are computed."""
    vh, vw = x.shape[-2:]
    r0, r1, wr0, wr1 = _axis_weights(in_h, out_h, vh, keep_h)
    c0, c1, wc0, wc1 = _axis_weights(in_w, out_w, vw, keep_w)
    # Only the input rows some output row reads need the horizontal pass. (np.take: a gather
    # along one axis, several times faster than the equivalent fancy index with an Ellipsis.)
    rows, inverse = np.unique(np.concatenate([r0, r1]), return_inverse=True)
    xr = np.take(x, rows, axis=-2)
    if prepare is not None:
        xr = prepare(xr)
    tmp = combine(np.take(xr, c0, axis=-1), wc0, np.take(xr, c1, axis=-1), wc1)
    wr0, wr1 = wr0[:, None], wr1[:, None]
    for start in range(0, keep_h, band_rows):
        stop = min(start + band_rows, keep_h)
        t0 = np.take(tmp, inverse[start:stop], axis=-2)
        t1 = np.take(tmp, inverse[keep_h + start:keep_h + stop], axis=-2)
        yield np.ascontiguousarray(combine(t0, wr0[start:stop], t1, wr1[start:stop]), dtype=np.float32)


def resize_bilinear(array: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Resize the last two axes (e.g. NCHW) of a float32 array like PyTorch's
    ``F.interpolate(mode="bilinear", align_corners=False)`` without antialiasing."""
    if not isinstance(array, np.ndarray) or array.dtype != np.float32:
        raise InputError("resize_bilinear expects a float32 numpy array")
    if array.ndim < 2 or array.shape[-1] == 0 or array.shape[-2] == 0:
        raise InputError(f"resize_bilinear needs non-empty last two axes, got {list(array.shape)}")
    out_h = _positive_int(out_h, "output height")
    out_w = _positive_int(out_w, "output width")
    in_h, in_w = array.shape[-2:]
    return _resize(array, in_h, in_w, out_h, out_w, out_h, out_w)


def preprocess(image_rgb: np.ndarray, target_size: int) -> tuple[np.ndarray, Geometry]:
    """RGB uint8 [H, W, 3] -> encoder input float32 [1, 3, S, S] (S = target_size) and geometry."""
    image = validate_image(image_rgb)
    geometry = geometry_for(image.shape[0], image.shape[1], target_size)
    bgr = image[:, :, ::-1].transpose(2, 0, 1)  # view: [3, H, W] in B, G, R order

    def normalise(rows: np.ndarray) -> np.ndarray:
        return (rows.astype(np.float32) - MEAN_BGR[:, None, None]) / STD_BGR[:, None, None]

    side, size = geometry.padded_side, geometry.target_size
    # The zero padding (after normalisation) is implicit: taps beyond the image get weight 0.
    resized = _resize(bgr, side, side, size, size, size, size, prepare=normalise)
    return resized[None], geometry


# Output rows of the logits' upsampling computed at once by NumPy: the temporaries of a band stay
# in the CPU cache, which makes the upsampling several times faster than in one piece.
_BAND_ROWS = 64


def _native_kernels() -> ModuleType | None:
    """``custom_ops.native`` when its kernel library loads, else None (installed without a C++
    compiler, or a library that does not load or predates the upsampling entry)."""
    try:
        from i2f_deploy.custom_ops import native

        native.kernels()
    except (ImportError, OSError, AttributeError):  # a missing library is a FileNotFoundError
        return None
    return native


_NATIVE = _native_kernels()
# The code that upsamples the logits to the image (the same bits either way; see the docstring).
UPSAMPLING: Literal["native", "numpy"] = "numpy" if _NATIVE is None else "native"


def logits_to_image(logits: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Logits at the target size ([S, S] or [1, 1, S, S]) -> float32 [H, W] on the image:
    bilinear to the padded square, then crop (official order; threshold at 0 afterwards).
    Within float32 rounding of PyTorch's ``F.interpolate`` (``_combine_float32``), computing only
    the pixels the crop keeps."""
    grid = _logits_grid(logits, geometry)
    if UPSAMPLING == "native":
        return _native_upsample(grid, geometry, mask=False)
    image = np.empty((geometry.height, geometry.width), np.float32)
    start = 0
    for band in _upsample_bands(grid, geometry, _BAND_ROWS):
        image[start:start + band.shape[0]] = band
        start += band.shape[0]
    return image


def logits_to_mask(logits: np.ndarray, geometry: Geometry, band_rows: int = _BAND_ROWS) -> np.ndarray:
    """``logits_to_image(logits, geometry) > 0`` (bool [H, W]) without the image-sized float
    temporaries that a large image would otherwise hold at once: natively a row at a time, with
    NumPy ``band_rows`` rows at a time."""
    grid = _logits_grid(logits, geometry)
    if UPSAMPLING == "native":
        return _native_upsample(grid, geometry, mask=True)
    mask = np.empty((geometry.height, geometry.width), bool)
    start = 0
    for band in _upsample_bands(grid, geometry, band_rows):
        np.greater(band, 0, out=mask[start:start + band.shape[0]])
        start += band.shape[0]
    return mask


def _logits_grid(logits: np.ndarray, geometry: Geometry) -> np.ndarray:
    """The logits as a float32 [S, S] array, once the arguments are checked."""
    if not isinstance(geometry, Geometry):
        raise InputError(f"expected a Geometry, got {type(geometry).__name__}")
    size = geometry.target_size
    if not isinstance(logits, np.ndarray) or not np.issubdtype(logits.dtype, np.floating):
        raise InputError("logits must be a floating-point numpy array")
    if logits.shape not in ((size, size), (1, 1, size, size)):
        raise InputError(
            f"logits must have shape [{size}, {size}] or [1, 1, {size}, {size}], "
            f"got {list(logits.shape)}")
    return logits.reshape(size, size).astype(np.float32, copy=False)


def _upsample_bands(grid: np.ndarray, geometry: Geometry, band_rows: int) -> Iterator[np.ndarray]:
    """The logits' grid bilinear to the padded square and cropped to the image, in bands of
    ``band_rows`` rows (NumPy)."""
    size, side = geometry.target_size, geometry.padded_side
    return _resize_bands(grid, size, size, side, side, geometry.height, geometry.width, band_rows, _combine_float32)


def _native_upsample(grid: np.ndarray, geometry: Geometry, mask: bool) -> np.ndarray:
    """``_upsample_bands``' numbers (or their ``> 0``) from the native kernel, on the same taps."""
    assert _NATIVE is not None
    size, side = geometry.target_size, geometry.padded_side
    rows = _axis_weights(size, side, size, geometry.height)
    cols = _axis_weights(size, side, size, geometry.width)
    result: np.ndarray = _NATIVE.bilinear_upsample(grid, rows, cols, mask=mask)
    return result


def to_target_click(click: Click, geometry: Geometry) -> Click:
    """A click in image pixels -> the same click on the target-size prompt map (int truncation)."""
    if not isinstance(click, Click):
        raise InputError(f"expected a Click, got {type(click).__name__}")
    if not (0 <= click.y < geometry.height and 0 <= click.x < geometry.width):
        raise InputError(
            f"click (x={click.x}, y={click.y}) lies outside the "
            f"{geometry.width}x{geometry.height} image")
    return scale_click(click, geometry.scale)
