"""Prompt maps after click sequences, kept so a sequence that extends a known one costs one decoder run.

The interactive loop's state after clicks ``c1..cn`` is a pure function of the image and that
sequence (see ``i2f_deploy.runtime.session``): undo is the state of ``c1..cn-1``, redo that of the
longer sequence again, and a tool that re-sends every click of an object on each request
(Label Studio, X-AnyLabeling, CVAT) extends the sequence it sent before. So the server keeps the
prompt map after each sequence it has decoded, compressed (a few kB), in one LRU shared by all
sessions and adapters, keyed by image id and clicks; continuing from the longest known prefix
replays nothing else.
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from i2f_deploy.prompt_map import Click

Key = tuple[str, tuple[Click, ...]]


class ClickStates:
    """Thread-safe LRU of packed prompt maps [1, 1, S, S] by (image id, clicks)."""

    def __init__(self, capacity: int, size: int) -> None:
        self.capacity = capacity
        self.size = size
        self._maps: OrderedDict[Key, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, image_id: str, clicks: Sequence[Click], ref_label: np.ndarray) -> None:
        packed = zlib.compress(np.ascontiguousarray(ref_label, np.uint8).tobytes(), 1)
        with self._lock:
            self._maps[(image_id, tuple(clicks))] = packed
            self._maps.move_to_end((image_id, tuple(clicks)))
            while len(self._maps) > self.capacity:
                self._maps.popitem(last=False)

    def longest_prefix(self, image_id: str, clicks: Sequence[Click], limit: int) -> tuple[int, np.ndarray | None]:
        """(k, prompt map after ``clicks[:k]``) for the largest known k <= ``limit``; (0, None) if none."""
        with self._lock:
            for k in range(min(limit, len(clicks)), 0, -1):
                packed = self._maps.get((image_id, tuple(clicks[:k])))
                if packed is not None:
                    self._maps.move_to_end((image_id, tuple(clicks[:k])))
                    break
            else:
                return 0, None
        ref_label = np.frombuffer(zlib.decompress(packed), np.uint8).reshape(1, 1, self.size, self.size)
        return k, ref_label

    def __len__(self) -> int:
        return len(self._maps)
