"""A bound on the memory that images in flight take: decoding them and computing their masks.

A 6000 x 6000 PNG can be 100 kB on the wire (and within ``--max-pixels``), yet it decodes to
108 MB and its mask takes tens more: a handful at once could exhaust the machine. So each
decode and each mask holds an estimate of its peak bytes (from the image's size, known before
the work starts) against ``--image-memory-mb``; a request that would go over it waits for
nothing and gets 503 with ``Retry-After``. What an image keeps after its request (its pixels
until the encoder has run, then its features) is bounded by ``--encoder-queue`` and ``--cache-mb``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from i2f_deploy.errors import I2FError
from i2f_deploy.serve.config import MB
from i2f_deploy.serve.images import ImageTooLarge

# Peaks measured with tracemalloc at 6000 x 6000 (tests/test_serve_hostile.py checks them):
DECODE_BYTES_PER_PIXEL = 3  # the decoded image, converted to RGB in place (3.0 measured)
DECODE_FIXED_BYTES = 8 * MB  # the codec's own buffers
MASK_BYTES_PER_PIXEL = 2  # the bool mask and one band's temporaries
MASK_BYTES_PER_COLUMN_AND_ROW = 32  # the logits' horizontal pass: (target size + 1) rows x the width (float64 sums)


class Busy(I2FError):
    """The server is at one of its limits (encoder queue, image memory): try again later."""

    http_status = 503


class MemoryBudget:
    """Bytes held by images in flight, at most ``limit_bytes`` at once (thread-safe)."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._held = 0
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, nbytes: int, what: str) -> Iterator[None]:
        """Hold ``nbytes`` for the duration of the block, or raise ``Busy`` if they do not fit now
        (413 if they never would)."""
        if nbytes > self.limit_bytes:
            raise ImageTooLarge(f"{what} needs about {nbytes / MB:.0f} MiB, more than --image-memory-mb "
                                f"{self.limit_bytes // MB} allows")
        with self._lock:
            if self._held + nbytes > self.limit_bytes:
                raise Busy(f"{what} needs about {nbytes / MB:.0f} MiB and images in flight already hold "
                           f"{self._held / MB:.0f} of the {self.limit_bytes / MB:.0f} MiB of --image-memory-mb; "
                           "try again shortly")
            self._held += nbytes
        try:
            yield
        finally:
            with self._lock:
                self._held -= nbytes

    def hold_decode(self, width: int, height: int) -> AbstractContextManager[None]:
        return self.hold(decode_bytes(width, height), f"decoding a {width}x{height} image")

    def hold_mask(self, width: int, height: int, target_size: int) -> AbstractContextManager[None]:
        return self.hold(mask_bytes(width, height, target_size), f"a mask of a {width}x{height} image")

    @property
    def held_bytes(self) -> int:
        return self._held


def decode_bytes(width: int, height: int) -> int:
    """The estimated peak of decoding an image of this size."""
    return DECODE_BYTES_PER_PIXEL * width * height + DECODE_FIXED_BYTES


def mask_bytes(width: int, height: int, target_size: int) -> int:
    """The estimated peak of upsampling the logits of an export of ``target_size`` to a mask of an
    image of this size (``preprocess.logits_to_mask``)."""
    return MASK_BYTES_PER_PIXEL * width * height + MASK_BYTES_PER_COLUMN_AND_ROW * (target_size + 1) * width
