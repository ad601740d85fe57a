"""Label Studio's brush RLE: how a ``brushlabels`` result carries its mask (``value.rle``).

The format is thi-ng's ``rle-pack`` as Label Studio's converter documents and decodes it
(``label_studio_converter/brush.py`` of HumanSignal/label-studio-converter, now
``label_studio_sdk/converter/brush.py``; ``mask2rle`` there is what the ML backend examples call,
e.g. ``label_studio_ml/examples/segment_anything_model/model.py`` of
HumanSignal/label-studio-ml-backend). That package pulls pandas and nltk, so the encoder is written
here from the format:

* the values are the mask's RGBA bytes, row-major: each pixel four times (0 or 255);
* a bit stream, most significant bit first: 32 bits the number of values, 5 bits word size - 1
  (8 bits), four times 4 bits the run-length field sizes - 1 (3, 4, 8, 16 bits);
* then chunks: 1 bit 1 (a repeated value; 0 would start literal values), 2 bits the index of the
  field size, that many bits the run length - 1, then the value's 8 bits;
* zero bits pad the stream to whole bytes; the result is the list of byte values.
"""

from __future__ import annotations

import numpy as np

WORD_BITS = 8
RUN_FIELD_BITS = (3, 4, 8, 16)


def _bits(value: int, width: int) -> np.ndarray:
    return (value >> np.arange(width - 1, -1, -1)) & 1


def mask_to_rle(mask: np.ndarray) -> list[int]:
    """A bool [H, W] mask -> Label Studio brush RLE bytes. The runs are found on the pixels and
    their lengths multiplied by 4 (each pixel is 4 equal RGBA values), so no array of 4 values a
    pixel is ever built."""
    flat = np.asarray(mask, bool).reshape(-1)
    starts = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1])
    lengths = 4 * np.diff(np.concatenate([starts, [flat.size]]))
    values = flat[starts].astype(np.int64) * 255
    # runs longer than the widest field are split into chunks of 2**16 values
    limit = 1 << RUN_FIELD_BITS[-1]
    pieces = -(-lengths // limit)
    chunk_values = np.repeat(values, pieces)
    chunk_lengths = np.full(int(pieces.sum()), limit, np.int64)
    last = np.cumsum(pieces) - 1
    chunk_lengths[last] = lengths - (pieces - 1) * limit
    index = np.searchsorted(np.array([1 << b for b in RUN_FIELD_BITS]), chunk_lengths)  # smallest field that fits
    field = np.array(RUN_FIELD_BITS)[index]
    # one code per chunk: flag 1, 2-bit field index, length - 1, value
    codes = (((1 << 2 | index) << field | (chunk_lengths - 1)) << WORD_BITS) | chunk_values
    widths = 3 + field + WORD_BITS
    offsets = np.repeat(np.cumsum(widths) - widths, widths)
    position = np.arange(int(widths.sum())) - offsets
    body = (np.repeat(codes, widths) >> (np.repeat(widths, widths) - 1 - position)) & 1
    header = np.concatenate([_bits(4 * flat.size, 32), _bits(WORD_BITS - 1, 5),
                             *[_bits(b - 1, 4) for b in RUN_FIELD_BITS]])
    return np.packbits(np.concatenate([header, body]).astype(np.uint8)).tolist()
