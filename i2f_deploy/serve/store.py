"""The images the server knows, by content id, with their encoder outputs: an LRU bounded in bytes.

An entry holds the pixels until the encoder has run (the background worker needs them) and the
encoder outputs after (the pixels are then dropped: clicks need only the features and the
geometry). What an entry holds counts against the budget; when the total exceeds it, the least
recently used *encoded* entries are dropped (entries waiting for the encoder are bounded by the
encoder queue instead). A dropped image is simply unknown again: posting it again re-encodes it.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from i2f_deploy.preprocess import Geometry

log = logging.getLogger("i2f_deploy.serve")


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


class ImageStore:
    """Thread-safe LRU of ``Entry`` by image id, bounded by ``budget_bytes``."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
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
        with self._lock:
            entry.features, entry.pixels, entry.encode_ms = features, None, encode_ms
            entry.ready.set()
            self._evict()

    def failed(self, entry: Entry, error: str) -> None:
        with self._lock:
            entry.error, entry.pixels = error, None
            entry.ready.set()
            self._entries.pop(entry.image_id, None)

    def _evict(self) -> None:
        total = sum(e.nbytes for e in self._entries.values())
        for image_id in list(self._entries):
            if total <= self.budget_bytes:
                break
            entry = self._entries[image_id]
            if entry.features is None:
                continue  # waiting for the encoder: bounded by the queue
            total -= entry.nbytes
            del self._entries[image_id]
            self.evictions += 1
            log.info("feature cache: dropped image %s (%.1f MiB) to stay within %.0f MiB", image_id,
                     entry.nbytes / (1 << 20), self.budget_bytes / (1 << 20))

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"images": len(self._entries),
                    "encoded": sum(e.features is not None for e in self._entries.values()),
                    "bytes": sum(e.nbytes for e in self._entries.values()),
                    "budget_bytes": self.budget_bytes, "evictions": self.evictions}
