"""Images and masks as clients send and read them: PNG bytes, base64, the server's mask PNGs
and COCO RLE, Label Studio's brush RLE."""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np


def png_bytes(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def b64(rgb: np.ndarray) -> str:
    return base64.b64encode(png_bytes(rgb)).decode()


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def png_to_mask(data: bytes) -> np.ndarray:
    """A mask PNG as the server writes it (0 background, 255 object) -> bool [H, W]."""
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE) > 127


def coco_rle_to_mask(rle: dict) -> np.ndarray:
    """Uncompressed COCO RLE (column-major runs, background first) -> bool [H, W]."""
    flat = np.concatenate([np.full(n, i % 2, bool) for i, n in enumerate(rle["counts"])])
    return flat.reshape(rle["size"], order="F")


def decode_brush_rle(data: list[int]) -> np.ndarray:
    """Label Studio's brush RLE decoder written from the format (thi-ng rle-pack, as documented in
    label_studio_converter/brush.py): header, then repeated-value or literal chunks."""
    bits = np.unpackbits(np.array(data, np.uint8))
    position = 0

    def read(width: int) -> int:
        nonlocal position
        value = 0
        for bit in bits[position:position + width]:
            value = value << 1 | int(bit)
        position += width
        return value

    count = read(32)
    word = read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    out = np.zeros(count, np.uint8)
    i = 0
    while i < count:
        repeated = read(1)
        j = i + 1 + read(sizes[read(2)])
        if repeated:
            out[i:j] = read(word)
        else:
            for k in range(i, j):
                out[k] = read(word)
        i = j
    return out
