"""A bound on graph runs at once, with clicks served before encodings.

Every graph run (encoder or decoder) holds a slot. Encodings may hold at most ``slots - 1`` of
them (all of them when there is one), and a waiting click is admitted before any waiting
encoding, so a queue of freshly uploaded images never starves the people clicking.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class GraphGate:
    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._encode_slots = max(1, slots - 1)
        self._cond = threading.Condition()
        self._running = 0
        self._encoding = 0
        self._clicks_waiting = 0

    @contextmanager
    def click(self) -> Iterator[None]:
        """Hold a slot for one decoder run."""
        with self._cond:
            self._clicks_waiting += 1
            try:
                self._cond.wait_for(lambda: self._running < self.slots)
            finally:
                self._clicks_waiting -= 1
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify_all()

    @contextmanager
    def encode(self) -> Iterator[None]:
        """Hold a slot for one encoder run (after any waiting click)."""
        with self._cond:
            self._cond.wait_for(lambda: self._running < self.slots and self._encoding < self._encode_slots
                                and not self._clicks_waiting)
            self._running += 1
            self._encoding += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._encoding -= 1
                self._cond.notify_all()
