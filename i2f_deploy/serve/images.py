"""Images as clients send them (file bytes, base64, data URIs, URLs) -> RGB arrays and their ids.

An image is identified by a hash of its decoded pixels, so the same picture sent twice — as an
upload, as base64, re-encoded by a tool on every click — maps to one cache entry and one
encoder run.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import urllib.error
import urllib.parse
import urllib.request

import cv2
import numpy as np

from i2f_deploy.errors import InputError


class ImageError(InputError):
    """An image that cannot be used (HTTP 422 unless ``status`` says otherwise)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def image_id(rgb: np.ndarray) -> str:
    """Content hash of the pixels (and shape): the id under which features are cached."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(rgb.shape).encode())
    digest.update(memoryview(np.ascontiguousarray(rgb)).cast("B"))
    return digest.hexdigest()


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Encoded image bytes (PNG, JPEG, BMP, WebP, TIFF, ...) -> RGB uint8 [H, W, 3]."""
    if not data:
        raise ImageError("the image is empty")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise ImageError("cannot decode the image (not a PNG, JPEG, BMP, WebP or TIFF file, or corrupt)")
    height, width = bgr.shape[:2]
    if height * width > max_pixels:
        raise ImageError(f"the image has {width}x{height} pixels, more than the limit of {max_pixels}", 413)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def decode_base64(text: str, max_pixels: int) -> np.ndarray:
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
    return decode_image(data, max_pixels)


def fetch_bytes(url: str, timeout_s: float, max_bytes: int, base_url: str | None = None,
                api_key: str | None = None) -> bytes:
    """GET an http(s) URL with a timeout and a size limit. A relative URL (Label Studio's
    ``/data/upload/...``) is resolved against ``base_url`` and sent with ``api_key`` the way
    Label Studio's ML backends authenticate (``Authorization: Token KEY``)."""
    headers = {}
    if not urllib.parse.urlsplit(url).scheme:
        if not base_url:
            raise ImageError(f"the image URL {url!r} is relative and no Label Studio URL is configured "
                             "(set LABEL_STUDIO_URL or --label-studio-url)")
        url = urllib.parse.urljoin(base_url.rstrip("/") + "/", url.lstrip("/"))
        if api_key:
            headers["Authorization"] = f"Token {api_key}"
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ImageError(f"only http and https image URLs are fetched, not {url!r}")
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (scheme checked)
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise ImageError(f"the image at {url} has {int(length)} bytes, more than the limit of {max_bytes}", 413)
            data = response.read(max_bytes + 1)
    except ImageError:
        raise
    except urllib.error.HTTPError as exc:
        raise ImageError(f"fetching {url} failed: HTTP {exc.code}", 424) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ImageError(f"fetching {url} failed: {reason}", 424) from None
    if len(data) > max_bytes:
        raise ImageError(f"the image at {url} is larger than the limit of {max_bytes} bytes", 413)
    return data
