"""A mask as clients take it: a PNG, COCO run lengths or JSON rows, at the image's own resolution
(its polygons are ``runtime.polygons``)."""

from __future__ import annotations

import cv2
import numpy as np

from i2f_deploy.errors import I2FError


def to_png(mask: np.ndarray) -> bytes:
    """1-bit PNG: 0 background, 255 foreground once decoded."""
    ok, data = cv2.imencode(".png", mask.astype(np.uint8) * 255, [cv2.IMWRITE_PNG_BILEVEL, 1])
    if not ok:
        raise I2FError("could not encode the mask as PNG")
    return data.tobytes()


def to_coco_rle(mask: np.ndarray) -> dict[str, object]:
    """COCO's uncompressed RLE: ``{"size": [h, w], "counts": [...]}``, column-major runs that start
    with background (``pycocotools.mask.frPyObjects`` reads it)."""
    flat = np.asarray(mask, bool).reshape(-1, order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def rows_json(mask: np.ndarray, before: bytes = b"", after: bytes = b"") -> bytes:
    """``before``, the mask as a JSON array of rows of 0 and 1 (``[[0,1,...],...]``, what CVAT
    takes), then ``after``, written into one buffer from the array itself: 2 bytes a pixel (twice
    that while the buffer becomes ``bytes``, which Ray Serve can pickle and a memoryview not),
    where a nested list of Python ints costs 8 and its JSON text another 2 on top."""
    height, width = mask.shape
    row = 2 * width + 2  # "[d,d,...,d]," per row
    text = np.full(len(before) + 1 + height * row - 1 + 1 + len(after), ord(","), np.uint8)
    text[:len(before)] = np.frombuffer(before, np.uint8)
    text[len(before)] = ord("[")
    rows = text[len(before) + 1:len(before) + 1 + height * row].reshape(height, row)
    rows[:, 0], rows[:, -2] = ord("["), ord("]")
    digits = rows[:, 1:-2:2]
    digits[...] = mask
    digits += ord("0")
    text[len(text) - len(after) - 1] = ord("]")
    text[len(text) - len(after):] = np.frombuffer(after, np.uint8)
    return text.tobytes()

