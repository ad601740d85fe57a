"""A mask as clients take it: a PNG, COCO run lengths or JSON rows, at the image's own resolution,
and its polygons (``runtime.polygons``) as JSON."""

from __future__ import annotations

import struct
import zlib

import numpy as np

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def to_png(mask: np.ndarray) -> bytes:
    """1-bit greyscale PNG: 0 background, 255 foreground once decoded. Written here from the
    packed bits (no filter, zlib's run-length strategy), which is several times faster than
    OpenCV's 1-bit PNG of the same mask and smaller: a mask is long runs of equal bytes."""
    mask = np.asarray(mask, bool)
    height, width = mask.shape
    rows = np.zeros((height, (width + 7) // 8 + 1), np.uint8)  # each row: filter type 0 (none), then its bits
    rows[:, 1:] = np.packbits(mask, axis=1)
    deflate = zlib.compressobj(6, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    pixels = deflate.compress(rows.tobytes()) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale, no interlace
    return _PNG_SIGNATURE + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", pixels) + _png_chunk(b"IEND", b"")


def polygons_json(shapes: list[np.ndarray]) -> bytes:
    """``json.dumps([p.tolist() for p in shapes])`` without separators' spaces (``[[[x,y],...],...]``),
    written from the arrays: a fragmented mask's outlines are tens of thousands of points, which
    as nested Python lists (and their JSON) cost tens of milliseconds. Each point is first a row
    of fixed width (brackets, separators, digits right-aligned, zero bytes where a short number
    or a separator it does not need leaves room), then the zero bytes are dropped in one pass.
    ``shapes`` are integer [N, 2] arrays of non-negative (x, y), as ``runtime.polygons`` gives."""
    if not shapes:
        return b"[]"
    points = np.concatenate(shapes)  # one reshape or conversion per shape would cost more than the rest
    if points.min() < 0:
        raise ValueError("polygon coordinates must be non-negative")
    sizes = np.array([len(shape) for shape in shapes])
    ends = np.cumsum(sizes)
    width = len(str(int(points.max())))  # digits of the largest coordinate
    # a row: ["[" opening its shape] "[" x "," y "]" then "," or "]" closing its shape [then "," between shapes]
    rows = np.zeros((len(points), 2 * width + 6), np.uint8)
    rows[ends - sizes, 0] = ord("[")
    rows[:, 1], rows[:, 2 + width], rows[:, 3 + 2 * width] = ord("["), ord(","), ord("]")
    rows[:, 4 + 2 * width] = ord(",")
    rows[ends - 1, 4 + 2 * width] = ord("]")
    rows[ends[:-1] - 1, 5 + 2 * width] = ord(",")
    for column, first in ((0, 2), (1, 3 + width)):
        value = points[:, column]
        for place in range(width):  # the units in the last column, a digit only where the number has one
            power = 10 ** place
            digit = (value // power % 10 + ord("0")).astype(np.uint8)
            rows[:, first + width - 1 - place] = digit if place == 0 else np.where(value >= power, digit, 0)
    text = rows.reshape(-1)
    return b"[" + text[text != 0].tobytes() + b"]"


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

