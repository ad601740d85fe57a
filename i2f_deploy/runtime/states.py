"""The interactive loop's states after click sequences, packed losslessly and kept by (image id,
clicks), so that undo, redo and a tool re-sending every click of an object replay nothing.

The state after clicks ``c1..cn`` is a pure function of the image and that sequence (each click
is one ``runtime.loop.advance`` from the state before it). So a state is found by its key, and a
sequence that extends a known one continues from its longest known prefix.

Two bounds: ``capacity`` states keep their prompt map (``state_codec``: runs, zstd'ed, a few kB;
None keeps all), and the ``logits_capacity`` most recently put of them also keep their
target-size logits and ``num_routed`` (byte planes, zstd'ed: ~0.7x raw), which is what makes
a state free to return to. Without logits a state costs one decoder run from the prompt map
before it. A state taken out carries its packed form, so putting it back (a run of undos) packs
nothing again. Thread-safe.

Packing a state costs a few milliseconds at 1024 (its logits most). A caller that has its answer
already (the session, once the click's prediction is made) puts with ``later=True``: the state is
packed and stored on the cache's own thread, off the click path, and every read first waits for
the puts still under way, so the cache answers exactly as if they had been made in place.
``close()`` stops that thread.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from i2f_deploy.prompt_map import Click
from i2f_deploy.runtime.state_codec import pack_logits, pack_prompt_map, unpack_logits, unpack_prompt_map

Key = tuple[str, tuple[Click, ...]]

log = logging.getLogger("i2f_deploy.runtime")


@dataclass(frozen=True, eq=False)
class State:
    """The loop after a click, at the target size (arrays read-only)."""

    ref_label: np.ndarray  # uint8 [1, 1, S, S]: the prediction folded in, where the next click starts
    logits: np.ndarray  # float32 [1, 1, S, S]: the decoder's output
    num_routed: int
    packed: tuple[bytes, bytes] | None = field(default=None, repr=False)  # as ClickStates keeps it


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


class ClickStates:
    """Packed states by (image id, clicks): an LRU of prompt maps, the newest also with logits."""

    def __init__(self, size: int, capacity: int | None, logits_capacity: int = 0) -> None:
        self.size = size
        self.capacity = capacity
        self.logits_capacity = logits_capacity
        self._maps: OrderedDict[Key, bytes] = OrderedDict()
        self._logits: OrderedDict[Key, tuple[bytes, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._packer: ThreadPoolExecutor | None = None  # the thread of puts made later, started on the first
        self._last_put: Future[None] | None = None  # the newest of them: the thread runs them in order
        self._packer_lock = threading.Lock()

    def put(self, image_id: str, clicks: Sequence[Click], state: State, logits: bool = False,
            later: bool = False) -> None:
        """Keep ``state`` as the state after ``clicks``; with its logits if ``logits`` (and the
        bound allows any). ``later``: pack and store it on the cache's thread (the caller returns
        at once; reads wait for it)."""
        if not later:
            self._settled()  # in order with the puts made later
            self._put(image_id, tuple(clicks), state, logits)
            return
        with self._packer_lock:
            if self._packer is None:
                self._packer = ThreadPoolExecutor(1, thread_name_prefix="i2f-states")
            self._last_put = self._packer.submit(self._put_logged, image_id, tuple(clicks), state, logits)

    def _put_logged(self, image_id: str, clicks: tuple[Click, ...], state: State, logits: bool) -> None:
        """``_put`` on the cache's thread: a state it cannot keep is only missing (the loop computes
        it again when needed), so the error is logged, not raised in an unrelated later call."""
        try:
            self._put(image_id, clicks, state, logits)
        except Exception:
            log.exception("could not keep the state after %d click(s) on image %s", len(clicks), image_id)

    def _settled(self) -> None:
        """Wait for the puts made ``later`` so far (the thread runs them in order: the newest last)."""
        with self._packer_lock:
            last = self._last_put
        if last is not None:
            last.result()

    def close(self) -> None:
        """Finish the puts under way and stop the cache's thread (a later put starts it again)."""
        self._settled()
        with self._packer_lock:
            packer, self._packer = self._packer, None
        if packer is not None:
            packer.shutdown(wait=True)

    def _put(self, image_id: str, clicks: tuple[Click, ...], state: State, logits: bool) -> None:
        key = (image_id, clicks)
        packed = state.packed[0] if state.packed else pack_prompt_map(state.ref_label)
        kept = None
        if logits and self.logits_capacity:
            kept = (state.packed[1] if state.packed else pack_logits(state.logits), state.num_routed)
        with self._lock:
            self._maps[key] = packed
            self._maps.move_to_end(key)
            if kept is not None:
                self._logits[key] = kept
                self._logits.move_to_end(key)
            while self.capacity is not None and len(self._maps) > self.capacity:
                dropped, _ = self._maps.popitem(last=False)
                self._logits.pop(dropped, None)
            while len(self._logits) > self.logits_capacity:
                self._logits.popitem(last=False)

    def take(self, image_id: str, clicks: Sequence[Click]) -> State | None:
        """The whole state after ``clicks`` if its logits are kept, else None. Its logits leave
        the cache (the caller holds the state now; it puts it back when it moves on), its prompt
        map stays."""
        self._settled()
        key = (image_id, tuple(clicks))
        with self._lock:
            kept = self._logits.pop(key, None)
            packed = self._maps.get(key)
            if kept is None or packed is None:
                return None
            self._maps.move_to_end(key)
        return State(_read_only(unpack_prompt_map(packed, self.size)), _read_only(unpack_logits(kept[0], self.size)),
                     kept[1], (packed, kept[0]))

    def longest_prefix(self, image_id: str, clicks: Sequence[Click], limit: int) -> tuple[int, np.ndarray | None]:
        """(k, prompt map after ``clicks[:k]``) for the largest known k <= ``limit``; (0, None) if none."""
        self._settled()
        with self._lock:
            for k in range(min(limit, len(clicks)), 0, -1):
                key = (image_id, tuple(clicks[:k]))
                packed = self._maps.get(key)
                if packed is not None:
                    self._maps.move_to_end(key)
                    break
            else:
                return 0, None
        return k, _read_only(unpack_prompt_map(packed, self.size))

    def clear(self) -> None:
        self._settled()
        with self._lock:
            self._maps.clear()
            self._logits.clear()

    @property
    def nbytes(self) -> int:
        """Bytes of the packed prompt maps and logits."""
        self._settled()
        with self._lock:
            return (sum(map(len, self._maps.values()))
                    + sum(len(logits) for logits, _ in self._logits.values()))

    @property
    def with_logits(self) -> int:
        """How many states keep their logits (return to them runs no decoder)."""
        self._settled()
        return len(self._logits)

    def __len__(self) -> int:
        """States kept, not counting puts still under way: it never waits (the server's
        ``/health`` reads it on its event loop)."""
        return len(self._maps)
