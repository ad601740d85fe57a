"""Images as clients send them (file bytes, base64, data URIs) -> RGB arrays and their ids.

An image is identified by a hash of its decoded pixels (``runtime.features.content_id``), so
the same picture sent twice — as an upload, as base64, re-encoded by a tool on every click —
maps to one cache entry and one encoder run.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

from i2f_deploy.errors import InputError

if TYPE_CHECKING:
    from i2f_deploy.serve.budget import MemoryBudget


class ImageError(InputError):
    """An image that cannot be used: not an image, or not one this server takes."""


class ImageTooLarge(ImageError):
    """An image (or its decode, or its download) beyond a size limit."""

    http_status = 413


class FetchRefused(ImageError):
    """An image URL outside the prefixes the server may fetch from."""

    http_status = 403


class FetchFailed(ImageError):
    """An image the server was told to fetch, and could not (the other end failed)."""

    http_status = 424


def check_declared_size(data: bytes, max_pixels: int) -> tuple[int, int]:
    """(width, height) the file's header declares, read without decoding the pixels (Pillow reads
    only the header on open), so that a small file declaring a huge image costs nothing: 413
    beyond ``max_pixels``, 422 when there is no image header."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Image.DecompressionBombError as exc:  # Pillow's own ceiling, far above any sane limit
        raise ImageTooLarge(f"the image declares more pixels than the limit of {max_pixels} ({exc})") from None
    except (OSError, ValueError, SyntaxError):  # Pillow's "cannot identify image file" and header errors
        raise ImageError("cannot decode the image (not a PNG, JPEG, BMP, WebP or TIFF file, or corrupt)") from None
    if width * height > max_pixels:
        raise ImageTooLarge(f"the image declares {width}x{height} pixels, more than the limit of {max_pixels}")
    return width, height


def decode_image(data: bytes, max_pixels: int, memory: MemoryBudget) -> np.ndarray:
    """Encoded image bytes (PNG, JPEG, BMP, WebP, TIFF) -> RGB uint8 [H, W, 3]; the pixel count is
    checked on the header before anything is decoded (413 beyond ``max_pixels``), and the decode
    holds its memory in ``memory`` (503 when images in flight already hold too much)."""
    if not data:
        raise ImageError("the image is empty")
    width, height = check_declared_size(data, max_pixels)
    with memory.hold_decode(width, height):
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None or bgr.size == 0:
            raise ImageError("cannot decode the image (not a PNG, JPEG, BMP, WebP or TIFF file, or corrupt)")
        height, width = bgr.shape[:2]
        if height * width > max_pixels:
            raise ImageTooLarge(f"the image has {width}x{height} pixels, more than the limit of {max_pixels}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)  # in place: no second copy of a large image


def decode_base64(text: str, max_pixels: int, memory: MemoryBudget) -> np.ndarray:
    """Base64 text, bare or as a ``data:image/...;base64,`` URI -> RGB uint8 [H, W, 3]."""
    if not isinstance(text, str):
        raise ImageError("the image must be a base64 string")
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if not header.endswith(";base64"):
            raise ImageError("a data URI image must be base64-encoded (data:image/png;base64,...)")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("the image is not valid base64") from None
    return decode_image(data, max_pixels, memory)
