"""An interactive segmentation session on exported graphs (NumPy + the runtime only, no torch):
the in-process façade of the interactive core (``runtime.interactive``).

``InteractiveSession.from_artifact(path)`` loads the encoder and the decoder of an artifact
directory once (``InteractiveSession(encoder=..., decoder=..., target_size=...)`` takes runners
loaded elsewhere), then:

* ``set_image(rgb)`` runs the encoder (or takes its outputs from a small cache of the last
  ``cache_size`` images, keyed by the image's content id, so switching back to an image is free)
  and starts a new interaction with no clicks;
* ``add_click(x, y, positive)`` (image pixels) scales the click to the target size (``int``
  truncation), runs one step of the official interactive loop on the cached encoder outputs
  (``runtime.loop.advance``: click into the prompt map, decoder, prediction folded back) and
  returns a ``Prediction``: the logits resized to the padded square and cropped to the image
  (``preprocess.logits_to_image``), thresholded at 0.

The state after clicks ``c1..cn`` is therefore a pure function of the image and that click
sequence. **Undo rule** (``runtime.history``): ``undo()`` drops the last click and restores the
state the loop had after the remaining clicks, i.e. exactly what a fresh ``set_image`` followed by
``add_click`` of each remaining click in order produces (same prompt map, same logits, same mask).
``undo(); redo()`` (or ``undo(); add_click(same)``) gives the state before the undo again. Masks
edited by hand are not part of the model; nothing else is remembered.

History (``runtime.states.ClickStates``): every state the session has left keeps its prompt map
(runs, zstd'ed: kB), and the ``history`` states left most recently (default ``DEFAULT_HISTORY`` =
32) also keep their ``num_routed`` and target-size logits, compressed losslessly (~0.7x raw).
Going back or forth to one of those runs no decoder; to an older one costs one decoder run (from
the kept prompt map before it), never a replay. The state a click leaves is packed after that
click's prediction is made, on the history's own thread (``ClickStates.put(later=True)``), so the
click does not wait for it; an undo right after waits for it if it is still running. Memory per
session: the encoder outputs of at most ``cache_size`` images (plus the current one), the
current state and the history (``history_bytes``; docs/runtime.md has figures).

Prefetch: ``prefetch(rgb)`` encodes the next image in a background thread while clicks go on on
the current one (the annotation tools' pattern); ``set_image`` of that image then waits for it
instead of encoding again. Clicks keep priority: the background encoding runs on its own encoder
(``background_encoder``: from an artifact, a single-threaded copy loaded on the first prefetch),
in a thread at the lowest scheduling priority (Linux: nice 19 for that thread), so a click's
decoder gets the cores first. The masks are those of a session without prefetch. ``close()`` (or
leaving a ``with`` block) stops that thread and releases that encoder.

Threads: a session owns its runners and mutable state; use one session per thread (two sessions
in two threads give the same results as run one after the other). Do not share one session
between threads: overlapping calls on one session raise ``I2FError`` rather than corrupt it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from i2f_deploy import runtime
from i2f_deploy.contract import IMAGE, REF_LABEL
from i2f_deploy.errors import I2FError, InputError
from i2f_deploy.preprocess import logits_to_image, preprocess, validate_image
from i2f_deploy.prompt_map import Click
from i2f_deploy.runtime import GraphRunner
from i2f_deploy.runtime.features import Entry, FeatureCache, content_id, encoded_entry
from i2f_deploy.runtime.history import ClickHistory, Clicks
from i2f_deploy.runtime.interactive import segment, start_map
from i2f_deploy.runtime.options import interactive_options
from i2f_deploy.runtime.polygons import polygons
from i2f_deploy.runtime.states import ClickStates, State

__all__ = ["DEFAULT_HISTORY", "InteractiveSession", "Prediction"]

DEFAULT_HISTORY = 32  # states that keep their logits for undo/redo (see the module docstring)


@dataclass(frozen=True, eq=False)
class Prediction:
    """The result of one click, on the image: ``mask`` bool [h, w] (``logits > 0``), ``logits``
    float32 [h, w], and ``num_routed`` (decoder tokens on full attention, a diagnostic)."""

    mask: np.ndarray
    logits: np.ndarray
    num_routed: int


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _lower_priority() -> None:
    """Run the calling thread (and the threads it starts) at the lowest priority, where the OS
    allows it per thread (Linux); elsewhere leave it as it is."""
    if hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
        with suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def _check_sizes(cache_size: Any, history: Any) -> None:
    if not _is_int(cache_size) or cache_size < 0:
        raise InputError(f"cache_size must be a non-negative integer, got {cache_size!r}")
    if not _is_int(history) or history < 0:
        raise InputError(f"history must be a non-negative integer, got {history!r}")


class InteractiveSession:
    """Click-by-click segmentation of one image at a time (see the module docstring).

    ``encoder`` and ``decoder`` are runners with the contract's names (``runtime.load``, the
    PyTorch reference, a counting wrapper in a test); ``background_encoder`` makes the encoder
    ``prefetch`` runs on, in its thread (default: ``encoder`` itself)."""

    def __init__(
        self,
        *,
        encoder: GraphRunner,
        decoder: GraphRunner,
        target_size: int,
        cache_size: int = 2,
        history: int = DEFAULT_HISTORY,
        background_encoder: Callable[[], GraphRunner] | None = None,
    ) -> None:
        _check_sizes(cache_size, history)
        self.target_size = int(target_size)
        self.cache_size = int(cache_size)
        self.history = int(history)
        self._encoder = encoder
        self._decoder = decoder
        self._cache = FeatureCache(max_images=self.cache_size)
        self._states = ClickStates(self.target_size, None, self.history)
        self._busy = threading.Lock()
        self.encoder_runs = 0
        self.prefetch_runs = 0  # encodings set_image took from prefetch (not in encoder_runs)
        self.decoder_runs = 0
        self._image: Entry | None = None
        # prefetch: the runner is made in the background thread (so its threads inherit its priority)
        self._load_background: Callable[[], GraphRunner] = background_encoder or (lambda: encoder)
        self._background: GraphRunner | None = None
        self._worker: ThreadPoolExecutor | None = None
        self._prefetched: tuple[str, Future[Entry]] | None = None
        self._new_interaction()

    @classmethod
    def from_artifact(
        cls,
        artifact_dir: str | Path,
        backend: str = "onnxruntime",
        threads: int | None = None,
        *,
        cache_size: int = 2,
        history: int = DEFAULT_HISTORY,
        verify: bool = True,
    ) -> InteractiveSession:
        """A session on the encoder and decoder of an export, loaded on ``backend`` with the
        interactive options (``runtime.options.interactive_options``: ONNX Runtime's threads do
        not spin-wait); ``prefetch`` loads a single-threaded copy of the encoder on first use."""
        _check_sizes(cache_size, history)
        target_size = runtime.read_manifest(artifact_dir).target_size
        options = interactive_options(backend)
        encoder = runtime.load(artifact_dir, "encoder", backend, threads, options=options, verify=verify)
        decoder = runtime.load(artifact_dir, "decoder", backend, threads, options=options, verify=verify)
        return cls(encoder=encoder, decoder=decoder, target_size=target_size, cache_size=cache_size,
                   history=history,
                   background_encoder=lambda: runtime.load(artifact_dir, "encoder", backend, 1, options=options,
                                                           verify=False))

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Stop the prefetch thread (a running encoding finishes first) and release its encoder,
        and the thread that packs the states left (``ClickStates.close``). The session still
        clicks afterwards; a later ``prefetch`` or click starts them again."""
        with self._exclusive():
            worker, self._worker, self._prefetched = self._worker, None, None
            if worker is not None:
                worker.shutdown(wait=True, cancel_futures=True)
            self._background = None
            self._states.close()

    def __enter__(self) -> InteractiveSession:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ state
    def _new_interaction(self) -> None:
        self._history = ClickHistory()
        self._state: State | None = None  # after all clicks
        self._prediction: Prediction | None = None
        self._states.clear()

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        if not self._busy.acquire(blocking=False):
            raise I2FError("InteractiveSession used from two threads at once; "
                           "create one session per thread")
        try:
            yield
        finally:
            self._busy.release()

    def _require_image(self) -> Entry:
        if self._image is None:
            raise InputError("no image set: call set_image(image) before clicking")
        return self._image

    # ------------------------------------------------------------------ image
    def _encode(self, encoder: GraphRunner, image: np.ndarray, key: str) -> Entry:
        tensor, geometry = preprocess(image, self.target_size)
        return encoded_entry(key, geometry, encoder.run({IMAGE: tensor}))

    def set_image(self, image: np.ndarray) -> None:
        """Use ``image`` (RGB uint8 [H, W, 3]); runs the encoder unless the image is the current
        one or in the cache (same pixels, any array).
        Clears the clicks (also when the image is the current one)."""
        image = validate_image(image)
        with self._exclusive():
            key = content_id(image)
            entry = self._cache.get(key)
            if entry is None and self._image is not None and key == self._image.image_id:
                entry = self._image  # the current image again (not cached when cache_size=0)
            if entry is None:
                entry = self._take_prefetched(key)
                if entry is None:
                    entry = self._encode(self._encoder, image, key)
                    self.encoder_runs += 1
                self._cache.add(entry)
            self._image = entry
            self._new_interaction()

    def prefetch(self, image: np.ndarray) -> None:
        """Start encoding ``image`` (RGB uint8 [H, W, 3]) in the background, for a later
        ``set_image(image)``; clicks on the current image go on meanwhile and keep priority (see
        the module docstring). A newer prefetch replaces an older one; nothing happens for the
        current or a cached image. An encoder error is raised by that ``set_image``."""
        image = validate_image(image)
        with self._exclusive():
            key = content_id(image)
            current = self._image is not None and key == self._image.image_id
            if current or key in self._cache or (self._prefetched and self._prefetched[0] == key):
                return
            if self._worker is None:
                self._worker = ThreadPoolExecutor(1, thread_name_prefix="i2f-prefetch", initializer=_lower_priority)
            self._prefetched = (key, self._worker.submit(self._encode_in_background, image, key))

    def _encode_in_background(self, image: np.ndarray, key: str) -> Entry:
        if self._background is None:  # in this thread, so its threads inherit its priority
            self._background = self._load_background()
        return self._encode(self._background, image, key)

    def _take_prefetched(self, key: str) -> Entry | None:
        """The prefetched encoding of ``key`` (waiting for it if it is still running), or None."""
        if self._prefetched is None or self._prefetched[0] != key:
            return None
        future = self._prefetched[1]
        self._prefetched = None
        entry = future.result()
        self.prefetch_runs += 1
        return entry

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the current image."""
        geometry = self._require_image().geometry
        return geometry.height, geometry.width

    # ------------------------------------------------------------------ clicks
    def _decode(self, prompt_map: np.ndarray) -> dict[str, np.ndarray]:
        self.decoder_runs += 1
        return self._decoder.run({**self._require_image().features, REF_LABEL: prompt_map})  # type: ignore[dict-item]

    def _move_to(self, clicks: Clicks) -> Prediction | None:
        """Make the state after ``clicks`` the current one; the state left keeps its logits in
        the history."""
        image = self._require_image()
        state, _ = segment(self._decode, image.image_id, image.geometry, clicks, self._states, keep_last=False,
                           held=(self._history.clicks, self._state))
        left, left_clicks = self._state, self._history.clicks  # nothing changed until here
        self._state = state
        self._prediction = None
        if state is not None:
            logits = logits_to_image(state.logits, image.geometry)
            mask = logits > 0
            logits.flags.writeable = False
            mask.flags.writeable = False
            self._prediction = Prediction(mask, logits, state.num_routed)
        if left is not None:  # packed off the click path, once the answer is made
            self._states.put(image.image_id, left_clicks, left, logits=True, later=True)
        return self._prediction

    def add_click(self, x: int, y: int, positive: bool = True) -> Prediction:
        """Add a click at image pixel (x, y), on the object if ``positive``, and return the new
        prediction. Clears the redo history."""
        with self._exclusive():
            geometry = self._require_image().geometry
            if not _is_int(x) or not _is_int(y):
                raise InputError(f"click coordinates must be integers, got x={x!r}, y={y!r}")
            if not isinstance(positive, (bool, np.bool_)):
                raise InputError(f"click 'positive' must be a bool, got {positive!r}")
            if not (0 <= y < geometry.height and 0 <= x < geometry.width):
                raise InputError(f"click (x={x}, y={y}) lies outside the {geometry.width}x{geometry.height} image")
            prediction = self._history.click(Click(x=int(x), y=int(y), positive=bool(positive)), self._move_to)
            assert prediction is not None
            return prediction

    def undo(self) -> Prediction | None:
        """Remove the last click; returns the prediction of the remaining clicks (None when no
        click remains, or when there was nothing to undo). See the module docstring for the rule.
        Runs no decoder within the history bound, one decoder run beyond it."""
        with self._exclusive():
            self._require_image()
            return self._history.undo(self._move_to)

    def redo(self) -> Prediction | None:
        """Re-add the click removed by the last ``undo`` (None if there is nothing to redo).
        Runs no decoder within the history bound, one decoder run beyond it."""
        with self._exclusive():
            self._require_image()
            return self._history.redo(self._move_to)

    def reset(self) -> None:
        """Forget all clicks (and the redo history) of the current image; keeps the image."""
        with self._exclusive():
            self._require_image()
            self._new_interaction()

    # ------------------------------------------------------------------ results
    @property
    def clicks(self) -> tuple[Click, ...]:
        """The clicks so far, in image coordinates, oldest first."""
        return self._history.clicks

    @property
    def can_redo(self) -> bool:
        return self._history.can_redo

    @property
    def history_bytes(self) -> int:
        """Bytes held by the undo/redo history: the packed prompt maps and logits of the states
        kept (the encoder outputs are not counted)."""
        return self._states.nbytes

    @property
    def prediction(self) -> Prediction | None:
        """The prediction after the current clicks (None before the first click)."""
        self._require_image()
        return self._prediction

    @property
    def mask(self) -> np.ndarray:
        """Current mask, bool [h, w] (all False before the first click). Read-only."""
        geometry = self._require_image().geometry
        if self._prediction is None:
            mask = np.zeros((geometry.height, geometry.width), dtype=bool)
            mask.flags.writeable = False
            return mask
        return self._prediction.mask

    @property
    def prompt_map(self) -> np.ndarray:
        """The decoder's prompt map the next click starts from, uint8 [1, 1, S, S]. Read-only."""
        self._require_image()
        return start_map(self.target_size) if self._state is None else self._state.ref_label

    @property
    def target_logits(self) -> np.ndarray | None:
        """The decoder's logits after the current clicks, float32 [1, 1, S, S] (None before the
        first click). Read-only."""
        self._require_image()
        return None if self._state is None else self._state.logits

    def contours(self) -> list[np.ndarray]:
        """Outer boundaries of the current mask as int32 polygons [N, 2] of (x, y) image pixels,
        N >= 3 (``runtime.polygons``)."""
        return polygons(self.mask)
