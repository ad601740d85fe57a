"""Images by content id, with their encoder outputs: an LRU bounded in bytes (and, optionally, in
images), shared by the session and the server.

An image is identified by a hash of its pixels and shape, so the same picture sent twice (an
upload, base64, a tool re-sending it on every click, another array with the same pixels) maps to
one entry and one encoder run.

An entry holds the pixels until the encoder has run (a background encoder needs them) and the
encoder outputs after (the pixels are then dropped: clicks need only the features and the
geometry). What an entry holds counts against the budget; when the total exceeds it, the least
recently used *encoded* entries are dropped (entries waiting for the encoder are bounded by
whoever queues them). A dropped image is simply unknown again: adding it again re-encodes it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from i2f_deploy.preprocess import Geometry

log = logging.getLogger("i2f_deploy.runtime")


def content_id(rgb: np.ndarray) -> str:
    """Hash of the pixels and the shape: the id an image's features are kept under."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(rgb.shape).encode())
    digest.update(np.ascontiguousarray(rgb).data.cast("B"))
    return digest.hexdigest()


@dataclass(eq=False)
class Entry:
    """One image: ``ready`` is set once ``features`` (or ``error``) is there."""

    image_id: str
    geometry: Geometry
    pixels: np.ndarray | None
    features: dict[str, np.ndarray] | None = None
    error: str | None = None
    encode_ms: float | None = None
    ready: threading.Event = field(default_factory=threading.Event)

    @property
    def nbytes(self) -> int:
        held = self.pixels.nbytes if self.pixels is not None else 0
        return held + sum(a.nbytes for a in (self.features or {}).values())


def _contiguous(features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The features in C order, copied once per image where they are not (an encoder may hand
    out transposed views): the decoder's runners take C-order inputs and would copy them on every
    click instead, 9 ms for a 1024 embedding."""
    return {name: np.ascontiguousarray(array) for name, array in features.items()}


def encoded_entry(image_id: str, geometry: Geometry, features: dict[str, np.ndarray]) -> Entry:
    """An entry whose features are already there."""
    entry = Entry(image_id, geometry, None, _contiguous(features))
    entry.ready.set()
    return entry


class FeatureCache:
    """Thread-safe LRU of ``Entry`` by image id, bounded by ``budget_bytes`` and ``max_images``
    (None: no bound of that kind)."""

    def __init__(self, budget_bytes: int | None = None, max_images: int | None = None) -> None:
        self.budget_bytes = budget_bytes
        self.max_images = max_images
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.evictions = 0

    def get(self, image_id: str) -> Entry | None:
        """The entry (marked as recently used), or None."""
        with self._lock:
            entry = self._entries.get(image_id)
            if entry is not None:
                self._entries.move_to_end(image_id)
            return entry

    def __contains__(self, image_id: str) -> bool:
        with self._lock:
            return image_id in self._entries

    def add(self, entry: Entry) -> tuple[Entry, bool]:
        """Insert ``entry`` unless its id is known; returns (the stored entry, whether it is new)."""
        with self._lock:
            known = self._entries.get(entry.image_id)
            if known is not None and known.error is None:
                self._entries.move_to_end(entry.image_id)
                return known, False
            self._entries[entry.image_id] = entry
            self._evict()
            return entry, True

    def remove(self, image_id: str) -> None:
        with self._lock:
            self._entries.pop(image_id, None)

    def encoded(self, entry: Entry, features: dict[str, np.ndarray], encode_ms: float) -> None:
        """Store the encoder outputs of ``entry`` and drop its pixels."""
        features = _contiguous(features)
        with self._lock:
            entry.features, entry.pixels, entry.encode_ms = features, None, encode_ms
            entry.ready.set()
            self._evict()

    def failed(self, entry: Entry, error: str) -> None:
        with self._lock:
            entry.error, entry.pixels = error, None
            entry.ready.set()
            self._entries.pop(entry.image_id, None)

    def _over(self, total: int, count: int) -> bool:
        return ((self.budget_bytes is not None and total > self.budget_bytes)
                or (self.max_images is not None and count > self.max_images))

    def _evict(self) -> None:
        total, count = sum(e.nbytes for e in self._entries.values()), len(self._entries)
        for image_id in list(self._entries):
            if not self._over(total, count):
                break
            entry = self._entries[image_id]
            if entry.features is None:
                continue  # waiting for the encoder: bounded by its queue
            total, count = total - entry.nbytes, count - 1
            del self._entries[image_id]
            self.evictions += 1
            if self.budget_bytes is not None:
                log.info("feature cache: dropped image %s (%.1f MiB) to stay within %.0f MiB", image_id,
                         entry.nbytes / (1 << 20), self.budget_bytes / (1 << 20))

    def stats(self) -> dict[str, int | None]:
        with self._lock:
            return {"images": len(self._entries),
                    "encoded": sum(e.features is not None for e in self._entries.values()),
                    "bytes": sum(e.nbytes for e in self._entries.values()),
                    "budget_bytes": self.budget_bytes, "evictions": self.evictions}
