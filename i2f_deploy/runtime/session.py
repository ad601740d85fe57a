"""An interactive segmentation session on exported graphs (NumPy + the runtime only, no torch).

``InteractiveSession`` loads the encoder and the decoder of an artifact directory once, then:

* ``set_image(rgb)`` runs the encoder (or takes its outputs from a small cache of the last
  ``cache_size`` images, keyed by a hash of the pixels, so switching back to an image is free)
  and starts a new interaction with no clicks;
* ``add_click(x, y, positive)`` (image pixels) runs one step of the official interactive loop
  (``interact_test`` of the official target-size segmentor) and returns a ``Prediction``:

  1. the click is scaled to the target size (``int`` truncation) and added to the prompt map
     (``prompt_map.add_clicks`` with this click only, as the loop adds each new click once);
  2. the decoder runs on the cached encoder outputs and the prompt map;
  3. the target-size prediction ``logits > 0`` is folded into the prompt map
     (``prompt_map.apply_prediction``), which is what the next click starts from;
  4. the user-facing result is the logits resized to the padded square and cropped to the
     image (``preprocess.logits_to_image``), thresholded at 0.

The state after clicks ``c1..cn`` is therefore a pure function of the image and that click
sequence. **Undo rule**: ``undo()`` drops the last click and restores the state the loop had after
the remaining clicks, i.e. exactly what a fresh ``set_image`` followed by ``add_click`` of each
remaining click in order produces (same prompt map, same logits, same mask). Undo and redo are
therefore consistent: ``undo(); redo()`` (or ``undo(); add_click(same)``) gives the state before
the undo again. Masks edited by hand are not part of the model; nothing else is remembered.

What undo needs is only the click history: every state can be recomputed by replaying the
clicks through the decoder. To keep a single undo free, the session also keeps the state one
click back (prompt map and target-size logits); a deeper undo replays the remaining clicks
(one decoder run each) and refreshes that one-step snapshot on the way. Memory per session is
therefore flat: the encoder outputs of at most ``cache_size`` images (plus the current one), two
target-size states, the current image-size prediction and the list of clicks.

Threads: a session owns its runners and mutable state; use one session per thread (two sessions
in two threads give the same results as run one after the other). Do not share one session
between threads: overlapping calls on one session raise ``I2FError`` rather than corrupt it.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from i2f_deploy import runtime
from i2f_deploy.errors import I2FError, InputError
from i2f_deploy.preprocess import Geometry, logits_to_image, preprocess, to_target_click, validate_image
from i2f_deploy.prompt_map import Click, add_clicks, apply_prediction, initial_prompt_map

__all__ = ["Prediction", "InteractiveSession"]


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


class InteractiveSession:
    """Click-by-click segmentation of one image at a time (see the module docstring)."""

    def __init__(
        self,
        artifact_dir: str | Path,
        backend: str = "onnxruntime",
        threads: int | None = None,
        cache_size: int = 2,
        verify: bool = True,
    ) -> None:
        if not _is_int(cache_size) or cache_size < 0:
            raise InputError(f"cache_size must be a non-negative integer, got {cache_size!r}")
        manifest = runtime.read_manifest(artifact_dir)
        self.artifact_dir = Path(artifact_dir)
        self.backend = backend
        self.target_size = int(manifest["target_size"])
        self.cache_size = int(cache_size)
        self._encoder = runtime.load(artifact_dir, "encoder", backend, threads, verify=verify)
        self._decoder = runtime.load(artifact_dir, "decoder", backend, threads, verify=verify)
        self._cache: OrderedDict[bytes, _Encoded] = OrderedDict()
        self._busy = threading.Lock()
        self.encoder_runs = 0
        self.decoder_runs = 0
        self._encoded: _Encoded | None = None
        self._key: bytes | None = None
        self._feeds: dict[str, np.ndarray] = {}
        self._initial: np.ndarray = initial_prompt_map(self.target_size)
        self._initial.flags.writeable = False
        self._reset_state()

    # ------------------------------------------------------------------ state
    def _reset_state(self) -> None:
        self._clicks: list[Click] = []  # image coordinates
        self._redo: list[Click] = []
        self._step: _Step | None = None  # state after all clicks
        self._previous: _Step | None = None  # state after all clicks but the last, if known
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
                tensor, geometry = preprocess(image, self.target_size)
                features = self._encoder.run({"image": tensor})
                self.encoder_runs += 1
                encoded = _Encoded(features, geometry)
                if self.cache_size:
                    self._cache[key] = encoded
                    while len(self._cache) > self.cache_size:
                        self._cache.popitem(last=False)
            self._encoded, self._key = encoded, key
            self._feeds = dict(encoded.features)
            self._reset_state()

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
            click = Click(y=int(y), x=int(x), positive=kind)
        to_target_click(click, geometry)  # bounds check with the same message for Click objects
        return click

    def _advance(self, ref_label: np.ndarray, click: Click) -> _Step:
        """One iteration of the official loop, from the prompt map before ``click``."""
        geometry = self._encoded.geometry  # type: ignore[union-attr]
        ref_label = add_clicks(ref_label, [to_target_click(click, geometry)])
        self._feeds["ref_label"] = ref_label
        try:
            out = self._decoder.run(self._feeds)
        finally:
            self._feeds.pop("ref_label", None)
        self.decoder_runs += 1
        logits = out["logits"]
        after = apply_prediction(ref_label, logits.reshape(logits.shape[-2:]) > 0)
        after.flags.writeable = False
        logits.flags.writeable = False
        return _Step(after, logits, int(out["num_routed"]))

    def _to_prediction(self, step: _Step | None) -> Prediction | None:
        if step is None:
            return None
        logits = logits_to_image(step.logits, self._encoded.geometry)  # type: ignore[union-attr]
        mask = logits > 0
        logits.flags.writeable = False
        mask.flags.writeable = False
        return Prediction(mask, logits, step.num_routed)

    def _push(self, click: Click) -> Prediction:
        start = self._initial if self._step is None else self._step.ref_label
        step = self._advance(start, click)
        self._previous, self._step = self._step, step
        self._clicks.append(click)
        self._prediction = self._to_prediction(step)
        return self._prediction  # type: ignore[return-value]

    def add_click(self, x: int | Click, y: int | None = None, positive: bool | str | None = None) -> Prediction:
        """Add a click at image pixel (x, y) (``positive`` True/False or "positive"/"negative"),
        or a ``Click``, and return the new prediction. Clears the redo history."""
        with self._exclusive():
            click = self._as_click(x, y, positive)
            prediction = self._push(click)
            self._redo.clear()
            return prediction

    def undo(self) -> Prediction | None:
        """Remove the last click; returns the prediction of the remaining clicks (None when no
        click remains, or when there was nothing to undo). See the module docstring for the rule."""
        with self._exclusive():
            self._require_image()
            if not self._clicks:
                return None
            remaining = self._clicks[:-1]
            if not remaining:
                step, previous = None, None
            elif self._previous is not None:
                step, previous = self._previous, None
            else:
                step, previous = self._replay(remaining)  # may raise: nothing changed yet
            self._redo.append(self._clicks.pop())
            self._step, self._previous = step, previous
            self._prediction = self._to_prediction(step)
            return self._prediction

    def _replay(self, clicks: list[Click]) -> tuple[_Step, _Step | None]:
        """The loop's states after ``clicks`` and after ``clicks[:-1]`` (None if that is empty)."""
        previous: _Step | None = None
        step: _Step | None = None
        for click in clicks:
            previous, step = step, self._advance(self._initial if step is None else step.ref_label, click)
        assert step is not None
        return step, previous

    def redo(self) -> Prediction | None:
        """Re-add the click removed by the last ``undo`` (None if there is nothing to redo)."""
        with self._exclusive():
            self._require_image()
            if not self._redo:
                return None
            prediction = self._push(self._redo[-1])
            self._redo.pop()
            return prediction

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
