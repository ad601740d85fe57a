"""An interactive segmentation session on exported graphs (NumPy + the runtime only, no torch).

``InteractiveSession`` loads the encoder and the decoder of an artifact directory once, then:

* ``set_image(rgb)`` runs the encoder (or takes its outputs from a small cache of the last
  ``cache_size`` images, keyed by a hash of the pixels, so switching back to an image is free)
  and starts a new interaction with no clicks;
* ``add_click(x, y, positive)`` (image pixels) scales the click to the target size (``int``
  truncation), runs one step of the official interactive loop on the cached encoder outputs
  (``runtime.loop.advance``: click into the prompt map, decoder, prediction folded back) and
  returns a ``Prediction``: the logits resized to the padded square and cropped to the image
  (``preprocess.logits_to_image``), thresholded at 0.

The state after clicks ``c1..cn`` is therefore a pure function of the image and that click
sequence. **Undo rule**: ``undo()`` drops the last click and restores the state the loop had after
the remaining clicks, i.e. exactly what a fresh ``set_image`` followed by ``add_click`` of each
remaining click in order produces (same prompt map, same logits, same mask). Undo and redo are
therefore consistent: ``undo(); redo()`` (or ``undo(); add_click(same)``) gives the state before
the undo again. Masks edited by hand are not part of the model; nothing else is remembered.

History: every click keeps the prompt map after it (zlib'ed runs: kB), and the ``history``
states nearest the current one (default ``DEFAULT_HISTORY`` = 32; undone states waiting for a
redo count too) also keep their ``num_routed`` and target-size logits, compressed losslessly
(float32 byte planes, the two high ones zlib'ed: ~0.67x raw). Undo and redo within that bound run
no decoder; beyond it each step costs one decoder run (from the kept prompt map before that
click), never a replay. Memory per session: the encoder outputs of at most ``cache_size`` images
(plus the current one), the current state and the history (``history_bytes``; README has figures).

Prefetch: ``prefetch(rgb)`` encodes the next image in a background thread while clicks go on on
the current one (the annotation tools' pattern); ``set_image`` of that image then waits for it
instead of encoding again. Clicks keep priority: the background encoding runs on its own
single-threaded encoder (loaded on the first prefetch: one more copy of the encoder's weights),
in a thread at the lowest scheduling priority (Linux: nice 19 for that thread), so a click's
decoder gets the cores first. The masks are those of a session without prefetch.

Threads: a session owns its runners and mutable state; use one session per thread (two sessions
in two threads give the same results as run one after the other). Do not share one session
between threads: overlapping calls on one session raise ``I2FError`` rather than corrupt it.
"""

from __future__ import annotations

import hashlib
import os
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from i2f_deploy import runtime
from i2f_deploy.contract import IMAGE, REF_LABEL
from i2f_deploy.errors import I2FError, InputError
from i2f_deploy.preprocess import Geometry, logits_to_image, preprocess, to_target_click, validate_image
from i2f_deploy.prompt_map import Click, initial_prompt_map
from i2f_deploy.runtime import GraphRunner
from i2f_deploy.runtime.loop import advance

__all__ = ["DEFAULT_HISTORY", "Prediction", "InteractiveSession"]

DEFAULT_HISTORY = 32  # states that keep their logits for undo/redo (see the module docstring)


@dataclass(frozen=True, eq=False)
class Prediction:
    """The result of one click, on the image: ``mask`` bool [h, w] (``logits > 0``), ``logits``
    float32 [h, w], and ``num_routed`` (decoder tokens on full attention, a diagnostic)."""

    mask: np.ndarray
    logits: np.ndarray
    num_routed: int


@dataclass(frozen=True, eq=False)
class _Step:
    """The loop's state after a click, at the target size."""

    ref_label: np.ndarray  # uint8 [1, 1, S, S], after the prediction was folded in
    logits: np.ndarray  # float32 [1, 1, S, S], decoder output
    num_routed: int


@dataclass(frozen=True, eq=False)
class _Packed:
    """A state kept in the history, losslessly: the prompt map as runs and, while within the
    history bound, the logits' byte planes and ``num_routed``."""

    runs: bytes  # zlib of the run lengths' 4 byte planes (uint32) and the runs' values (uint8)
    logits: tuple[bytes, bytes] | None  # the 2 low byte planes as they are, zlib of the 2 high
    num_routed: int

    @property
    def nbytes(self) -> int:
        return len(self.runs) + sum(map(len, self.logits or ()))


def _pack_map(ref_label: np.ndarray) -> bytes:
    flat = ref_label.reshape(-1)
    starts = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    lengths = np.diff(starts, prepend=0, append=flat.size).astype("<u4")
    planes = lengths.view(np.uint8).reshape(-1, 4).T
    return zlib.compress(planes.tobytes() + flat[np.r_[0, starts]].tobytes(), 1)


def _unpack_map(packed: _Packed, size: int) -> np.ndarray:
    data = np.frombuffer(zlib.decompress(packed.runs), np.uint8)
    count = data.size // 5
    lengths = np.ascontiguousarray(data[:4 * count].reshape(4, count).T).view("<u4").reshape(-1)
    ref_label = np.repeat(data[4 * count:], lengths).reshape(1, 1, size, size)
    ref_label.flags.writeable = False
    return ref_label


def _pack_logits(logits: np.ndarray) -> tuple[bytes, bytes]:
    planes = np.ascontiguousarray(logits.astype("<f4", copy=False).reshape(-1).view(np.uint8).reshape(-1, 4).T)
    return planes[:2].tobytes(), zlib.compress(planes[2:], 1)  # the low planes hardly compress


def _unpack_logits(packed: tuple[bytes, bytes], size: int) -> np.ndarray:
    planes = np.empty((4, size * size), np.uint8)
    planes[:2] = np.frombuffer(packed[0], np.uint8).reshape(2, -1)
    planes[2:] = np.frombuffer(zlib.decompress(packed[1]), np.uint8).reshape(2, -1)
    logits = np.ascontiguousarray(planes.T).view("<f4").astype(np.float32, copy=False)
    logits = logits.reshape(1, 1, size, size)
    logits.flags.writeable = False
    return logits


@dataclass(frozen=True, eq=False)
class _Encoded:
    features: dict[str, np.ndarray]
    geometry: Geometry


def _image_key(image: np.ndarray) -> bytes:
    digest = hashlib.blake2b(digest_size=20)
    digest.update(repr((image.shape, image.dtype.str)).encode())
    digest.update(memoryview(np.ascontiguousarray(image)).cast("B"))
    return digest.digest()


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _lower_priority() -> None:
    """Run the calling thread (and the threads it starts) at the lowest priority, where the OS
    allows it per thread (Linux); elsewhere leave it as it is."""
    if hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except OSError:
            pass


def _check_sizes(cache_size: Any, history: Any) -> None:
    if not _is_int(cache_size) or cache_size < 0:
        raise InputError(f"cache_size must be a non-negative integer, got {cache_size!r}")
    if not _is_int(history) or history < 0:
        raise InputError(f"history must be a non-negative integer, got {history!r}")


class InteractiveSession:
    """Click-by-click segmentation of one image at a time (see the module docstring)."""

    def __init__(
        self,
        artifact_dir: str | Path,
        backend: str = "onnxruntime",
        threads: int | None = None,
        cache_size: int = 2,
        verify: bool = True,
        history: int = DEFAULT_HISTORY,
    ) -> None:
        _check_sizes(cache_size, history)
        target_size = runtime.read_manifest(artifact_dir).target_size
        encoder = runtime.load(artifact_dir, "encoder", backend, threads, verify=verify)
        decoder = runtime.load(artifact_dir, "decoder", backend, threads, verify=verify)
        self._start(encoder, decoder, target_size, cache_size, history)
        self._load_background = lambda: runtime.load(artifact_dir, "encoder", backend, 1, verify=False)

    @classmethod
    def from_runners(cls, encoder: GraphRunner, decoder: GraphRunner, target_size: int, cache_size: int = 2,
                     history: int = DEFAULT_HISTORY) -> InteractiveSession:
        """A session on runners loaded elsewhere: graphs shared with other code, or any object
        with ``run(feeds) -> outputs`` under the contract's names (the PyTorch reference, a
        counting wrapper in a test)."""
        _check_sizes(cache_size, history)
        session = cls.__new__(cls)
        session._start(encoder, decoder, target_size, cache_size, history)
        return session

    def _start(self, encoder: GraphRunner, decoder: GraphRunner, target_size: int, cache_size: int, history: int) -> None:
        self.target_size = int(target_size)
        self.cache_size = int(cache_size)
        self.history = int(history)
        self._encoder = encoder
        self._decoder = decoder
        self._cache: OrderedDict[bytes, _Encoded] = OrderedDict()
        self._busy = threading.Lock()
        self.encoder_runs = 0
        self.prefetch_runs = 0  # encodings set_image took from prefetch (not in encoder_runs)
        self.decoder_runs = 0
        self._encoded: _Encoded | None = None
        self._key: bytes | None = None
        self._initial: np.ndarray = initial_prompt_map(self.target_size)
        self._initial.flags.writeable = False
        # prefetch: the runner is made in the background thread (so its threads inherit its priority)
        self._load_background: Callable[[], GraphRunner] = lambda: encoder
        self._background: GraphRunner | None = None
        self._worker: ThreadPoolExecutor | None = None
        self._prefetched: tuple[bytes, Future[_Encoded]] | None = None
        self._reset_state()

    # ------------------------------------------------------------------ state
    def _reset_state(self) -> None:
        self._clicks: list[Click] = []  # image coordinates
        self._step: _Step | None = None  # state after all clicks
        self._packed: _Packed | None = None  # the current state packed, if it came from the history
        self._undo: list[_Packed] = []  # states after clicks[:1] .. clicks[:-1]
        self._redo: list[tuple[Click, _Packed]] = []  # undone clicks and their states, last on top
        self._prediction: Prediction | None = None

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        if not self._busy.acquire(blocking=False):
            raise I2FError("InteractiveSession used from two threads at once; "
                           "create one session per thread")
        try:
            yield
        finally:
            self._busy.release()

    def _require_image(self) -> _Encoded:
        if self._encoded is None:
            raise InputError("no image set: call set_image(image) before clicking")
        return self._encoded

    # ------------------------------------------------------------------ image
    def set_image(self, image: np.ndarray) -> None:
        """Use ``image`` (RGB uint8 [H, W, 3]); runs the encoder unless the image is the current
        one or in the cache (same pixels, any array).
        Clears the clicks (also when the image is the current one)."""
        image = validate_image(image)
        with self._exclusive():
            key = _image_key(image)
            encoded = self._cache.get(key)
            if encoded is not None:
                self._cache.move_to_end(key)
            elif key == self._key:  # the current image again (not cached when cache_size=0)
                encoded = self._encoded
            else:
                encoded = self._take_prefetched(key)
                if encoded is None:
                    tensor, geometry = preprocess(image, self.target_size)
                    encoded = _Encoded(self._encoder.run({IMAGE: tensor}), geometry)
                    self.encoder_runs += 1
                if self.cache_size:
                    self._cache[key] = encoded
                    while len(self._cache) > self.cache_size:
                        self._cache.popitem(last=False)
            self._encoded, self._key = encoded, key
            self._reset_state()

    def prefetch(self, image: np.ndarray) -> None:
        """Start encoding ``image`` (RGB uint8 [H, W, 3]) in the background, for a later
        ``set_image(image)``; clicks on the current image go on meanwhile and keep priority (see
        the module docstring). A newer prefetch replaces an older one; nothing happens for the
        current or a cached image. An encoder error is raised by that ``set_image``."""
        image = validate_image(image)
        with self._exclusive():
            key = _image_key(image)
            if key == self._key or key in self._cache or (self._prefetched and self._prefetched[0] == key):
                return
            if self._worker is None:
                self._worker = ThreadPoolExecutor(1, thread_name_prefix="i2f-prefetch", initializer=_lower_priority)
            self._prefetched = (key, self._worker.submit(self._encode_in_background, image))

    def _encode_in_background(self, image: np.ndarray) -> _Encoded:
        if self._background is None:  # in this thread, so its threads inherit its priority
            self._background = self._load_background()
        tensor, geometry = preprocess(image, self.target_size)
        return _Encoded(self._background.run({IMAGE: tensor}), geometry)

    def _take_prefetched(self, key: bytes) -> _Encoded | None:
        """The prefetched encoding of ``key`` (waiting for it if it is still running), or None."""
        if self._prefetched is None or self._prefetched[0] != key:
            return None
        future = self._prefetched[1]
        self._prefetched = None
        encoded = future.result()
        self.prefetch_runs += 1
        return encoded

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the current image."""
        geometry = self._require_image().geometry
        return geometry.height, geometry.width

    # ------------------------------------------------------------------ clicks
    def _as_click(self, x: Any, y: Any, positive: Any) -> Click:
        geometry = self._require_image().geometry
        if isinstance(x, Click):
            if y is not None or positive is not None:
                raise InputError("pass either a Click or x, y and positive, not both")
            click = x
        else:
            if y is None or positive is None:
                raise InputError("add_click needs x, y and positive (or a Click)")
            if not _is_int(x) or not _is_int(y):
                raise InputError(f"click coordinates must be integers, got x={x!r}, y={y!r}")
            if isinstance(positive, (bool, np.bool_)):
                kind = bool(positive)
            elif isinstance(positive, str):
                kind = Click.parse_kind(positive)
            else:
                raise InputError(f"click kind must be a bool or 'positive'/'negative', got {positive!r}")
            if not (0 <= y < geometry.height and 0 <= x < geometry.width):
                raise InputError(f"click (x={x}, y={y}) lies outside the "
                                 f"{geometry.width}x{geometry.height} image")
            click = Click(x=int(x), y=int(y), positive=kind)
        to_target_click(click, geometry)  # bounds check with the same message for Click objects
        return click

    def _decode(self, prompt_map: np.ndarray) -> dict[str, np.ndarray]:
        self.decoder_runs += 1
        return self._decoder.run({**self._encoded.features, REF_LABEL: prompt_map})  # type: ignore[union-attr]

    def _advance(self, ref_label: np.ndarray, click: Click) -> _Step:
        """One iteration of the official loop (``runtime.loop``), from the prompt map before ``click``."""
        step = advance(self._decode, ref_label, to_target_click(click, self._encoded.geometry))  # type: ignore[union-attr]
        return _Step(step.ref_label, step.logits, step.num_routed)

    def _to_prediction(self, step: _Step | None) -> Prediction | None:
        if step is None:
            return None
        logits = logits_to_image(step.logits, self._encoded.geometry)  # type: ignore[union-attr]
        mask = logits > 0
        logits.flags.writeable = False
        mask.flags.writeable = False
        return Prediction(mask, logits, step.num_routed)

    def _pack_current(self) -> _Packed:
        """The current state for the history (with logits unless ``history`` is 0)."""
        step = self._step
        assert step is not None
        packed = self._packed
        if packed is None or (packed.logits is None and self.history):
            packed = _Packed(_pack_map(step.ref_label),
                             _pack_logits(step.logits) if self.history else None, step.num_routed)
        elif packed.logits is not None and not self.history:
            packed = replace(packed, logits=None)
        return packed

    def _unpack(self, packed: _Packed) -> _Step:
        assert packed.logits is not None
        size = self.target_size
        return _Step(_unpack_map(packed, size), _unpack_logits(packed.logits, size), packed.num_routed)

    def _set_current(self, step: _Step | None, packed: _Packed | None) -> Prediction | None:
        self._prediction = self._to_prediction(step)
        self._step, self._packed = step, packed
        self._bound_history()
        return self._prediction

    def _bound_history(self) -> None:
        """Keep logits in at most ``history`` packed states, dropping them from the states
        farthest from the current one first (they form one run of states around it)."""
        undo = [i for i, p in enumerate(self._undo) if p.logits is not None]
        redo = [j for j, (_, p) in enumerate(self._redo) if p.logits is not None]
        for _ in range(len(undo) + len(redo) - self.history):
            behind = len(self._undo) - undo[0] if undo else -1  # clicks back from the current state
            ahead = len(self._redo) - redo[0] if redo else -1
            if behind > ahead:  # ties keep the undo side
                index = undo.pop(0)
                self._undo[index] = replace(self._undo[index], logits=None)
            else:
                index = redo.pop(0)
                click, packed = self._redo[index]
                self._redo[index] = (click, replace(packed, logits=None))

    def add_click(self, x: int | Click, y: int | None = None, positive: bool | str | None = None) -> Prediction:
        """Add a click at image pixel (x, y) (``positive`` True/False or "positive"/"negative"),
        or a ``Click``, and return the new prediction. Clears the redo history."""
        with self._exclusive():
            click = self._as_click(x, y, positive)
            step = self._advance(self._initial if self._step is None else self._step.ref_label, click)
            if self._step is not None:
                self._undo.append(self._pack_current())
            self._clicks.append(click)  # nothing changed until here
            self._redo.clear()
            return self._set_current(step, None)  # type: ignore[return-value]

    def undo(self) -> Prediction | None:
        """Remove the last click; returns the prediction of the remaining clicks (None when no
        click remains, or when there was nothing to undo). See the module docstring for the rule.
        Runs no decoder within the history bound, one decoder run beyond it."""
        with self._exclusive():
            self._require_image()
            if not self._clicks:
                return None
            step: _Step | None = None
            packed: _Packed | None = None
            if len(self._clicks) > 1:
                packed = self._undo[-1]
                if packed.logits is not None:
                    step = self._unpack(packed)
                else:  # beyond the bound: one decoder run from the prompt map before that click
                    start = _unpack_map(self._undo[-2], self.target_size) if len(self._undo) > 1 else self._initial
                    step, packed = self._advance(start, self._clicks[-2]), None
            undone = (self._clicks[-1], self._pack_current())
            del self._undo[-1:], self._clicks[-1]  # nothing changed until here
            self._redo.append(undone)
            return self._set_current(step, packed)

    def redo(self) -> Prediction | None:
        """Re-add the click removed by the last ``undo`` (None if there is nothing to redo).
        Runs no decoder within the history bound, one decoder run beyond it."""
        with self._exclusive():
            self._require_image()
            if not self._redo:
                return None
            click, packed = self._redo[-1]
            if packed.logits is not None:
                step: _Step = self._unpack(packed)
            else:
                step = self._advance(self._initial if self._step is None else self._step.ref_label, click)
                packed = None
            if self._step is not None:
                self._undo.append(self._pack_current())  # nothing changed until here
            self._redo.pop()
            self._clicks.append(click)
            return self._set_current(step, packed)

    def reset(self) -> None:
        """Forget all clicks (and the redo history) of the current image; keeps the image."""
        with self._exclusive():
            self._require_image()
            self._reset_state()

    # ------------------------------------------------------------------ results
    @property
    def clicks(self) -> tuple[Click, ...]:
        """The clicks so far, in image coordinates, oldest first."""
        return tuple(self._clicks)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def history_bytes(self) -> int:
        """Bytes held by the undo/redo history (packed prompt maps and logits; the current
        state and the encoder outputs are not counted)."""
        return sum(p.nbytes for p in self._undo) + sum(p.nbytes for _, p in self._redo)

    @property
    def prediction(self) -> Prediction | None:
        """The prediction after the current clicks (None before the first click)."""
        self._require_image()
        return self._prediction

    @property
    def mask(self) -> np.ndarray:
        """Current mask, bool [h, w] (all False before the first click). Read-only."""
        encoded = self._require_image()
        if self._prediction is None:
            return np.zeros((encoded.geometry.height, encoded.geometry.width), dtype=bool)
        return self._prediction.mask

    @property
    def prompt_map(self) -> np.ndarray:
        """The decoder's prompt map the next click starts from, uint8 [1, 1, S, S]. Read-only."""
        self._require_image()
        return self._initial if self._step is None else self._step.ref_label

    def contours(self) -> list[np.ndarray]:
        """Outer boundaries of the current mask as int32 polygons [N, 2] of (x, y) image pixels
        (OpenCV ``findContours``, external contours, simple chain approximation)."""
        import cv2

        mask = self.mask
        if not mask.any():
            return []
        found, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        return [c.reshape(-1, 2).astype(np.int32) for c in found]
