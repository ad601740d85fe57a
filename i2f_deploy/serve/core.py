"""The serving core every face (native API, web page, tool adapters) calls: encode once, decode per click.

``Engine`` loads the encoder and decoder once and shares them between all users:

* ``add_image(rgb)``: the image gets its content id; unknown images are queued for the background
  encoder (a bounded queue: a full one is refused with ``Busy``), known ones cost nothing;
* ``segment(image_id, clicks)``: the mask after that click sequence, at the image's own
  resolution. It waits for the image's encoding if needed, then asks the interactive core
  (``runtime.interactive.segment``: the longest click prefix already decoded, one
  ``runtime.loop.advance`` per remaining click), each decoder run holding a slot of the
  ``GraphGate`` (clicks before encodings); the result is the logits resized to the padded
  square, cropped, ``> 0``.

The content id, the feature cache, the click states and the loop are the core's (``runtime/``,
shared with ``InteractiveSession``); the engine adds its queue, its threads and the limits.
``ServingEngine`` is what the HTTP faces need of an engine: this one, or ``ray_app.RayEngine``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from i2f_deploy import runtime
from i2f_deploy.contract import IMAGE, REF_LABEL, Manifest
from i2f_deploy.errors import I2FError, InputError
from i2f_deploy.preprocess import geometry_for, logits_to_mask, preprocess, to_target_click
from i2f_deploy.prompt_map import Click
from i2f_deploy.runtime.features import Entry, FeatureCache, content_id
from i2f_deploy.runtime.interactive import segment
from i2f_deploy.runtime.options import interactive_options
from i2f_deploy.runtime.states import ClickStates
from i2f_deploy.serve.budget import Busy, MemoryBudget
from i2f_deploy.serve.config import MB, ServeConfig
from i2f_deploy.serve.gate import GraphGate

log = logging.getLogger("i2f_deploy.serve")

ENCODE_WAIT_S = 300.0  # a click waits this long at most for its image's encoding


class NotFound(I2FError):
    """An unknown (or evicted) image or session id."""

    http_status = 404


@dataclass(frozen=True)
class ImageInfo:
    image_id: str
    width: int
    height: int
    encoded: bool
    queued: bool  # this call queued it for the encoder


@dataclass(frozen=True, eq=False)
class Segmentation:
    """The result of a click sequence: ``mask`` bool [H, W] on the image (None before any click),
    with the image's size, so an answer never looks the image up again (it may be gone)."""

    image_id: str
    width: int
    height: int
    clicks: tuple[Click, ...]
    mask: np.ndarray | None
    num_routed: int | None
    timings: dict[str, float]  # milliseconds: encode_wait, decode, decoder_runs (a count), total


class ServingEngine(Protocol):
    """What ``api.create_app`` and the adapters need of an engine: ``Engine`` in one process,
    ``ray_app.RayEngine`` over a Ray cluster."""

    config: ServeConfig
    target_size: int
    model_name: str
    memory: MemoryBudget  # the images this process decodes

    def add_image(self, rgb: np.ndarray) -> ImageInfo:
        """Register an RGB uint8 image (queued for the encoder unless known)."""

    def info(self, key: str) -> ImageInfo:
        """The image's size and whether it is encoded (``NotFound`` if unknown)."""

    def segment(self, key: str, clicks: Sequence[Click]) -> Segmentation:
        """The prediction after ``clicks`` on image ``key``."""

    def stats(self) -> dict[str, object]:
        """Counters ``/health`` reports."""


class Engine:
    """The graphs, the feature cache, the click states and the background encoder."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        manifest = runtime.read_manifest(config.artifact_dir)
        self.manifest = manifest
        self.target_size = manifest.target_size
        self.model_name = str(manifest.config["name"])
        check_cache_holds_an_image(manifest, config.cache_mb)
        options = interactive_options(config.backend)
        self._encoder = runtime.load(config.artifact_dir, "encoder", backend=config.backend, threads=config.threads,
                                     options=options)
        self._decoder = runtime.load(config.artifact_dir, "decoder", backend=config.backend, threads=config.threads,
                                     options=options)
        self._encoder_lock = _lock_unless_concurrent(self._encoder)
        self._decoder_lock = _lock_unless_concurrent(self._decoder)
        self.gate = GraphGate(config.graph_runs)
        self.store = FeatureCache(config.cache_mb * MB)
        self.memory = MemoryBudget(config.image_memory_mb * MB)
        self.states = ClickStates(self.target_size, config.click_states)
        self._queue: queue.Queue[Entry | None] = queue.Queue(config.encoder_queue)
        self._counts_lock = threading.Lock()
        self.encoder_runs = 0
        self.decoder_runs = 0
        self._worker = threading.Thread(target=self._encode_loop, name="i2f-encoder", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ images
    def add_image(self, rgb: np.ndarray) -> ImageInfo:
        """Register an RGB uint8 image; queue it for the encoder unless it is known."""
        key = content_id(rgb)
        height, width = rgb.shape[:2]
        entry = Entry(key, geometry_for(height, width, self.target_size), rgb)
        stored, new = self.store.add(entry)
        if new:
            try:
                self._queue.put_nowait(stored)
            except queue.Full:
                self.store.remove(key)
                raise Busy(f"the encoder queue is full ({self.config.encoder_queue} images waiting); "
                           "try again shortly") from None
        return ImageInfo(key, width, height, stored.features is not None, new)

    def image(self, key: str) -> Entry:
        entry = self.store.get(key)
        if entry is None:
            raise NotFound(f"unknown image id {key!r} (never posted, or dropped from the feature cache: post it again)")
        return entry

    def info(self, key: str) -> ImageInfo:
        """What ``GET /api/images/{id}`` reports: the image's size and whether it is encoded."""
        entry = self.image(key)
        return ImageInfo(key, entry.geometry.width, entry.geometry.height, entry.features is not None, False)

    def _encode_loop(self) -> None:
        while True:
            entry = self._queue.get()
            if entry is None:
                return
            try:
                assert entry.pixels is not None, "an image is queued with its pixels"
                tensor, _ = preprocess(entry.pixels, self.target_size)
                with self.gate.encode(), self._encoder_lock:
                    start = time.perf_counter()
                    features = self._encoder.run({IMAGE: tensor})
                    elapsed = (time.perf_counter() - start) * 1e3
                with self._counts_lock:
                    self.encoder_runs += 1
                self.store.encoded(entry, features, elapsed)
            except Exception as exc:  # a bad image must not stop the worker
                log.exception("encoder failed on image %s", entry.image_id)
                self.store.failed(entry, f"the encoder failed on this image: {exc}")

    def _features(self, key: str) -> tuple[Entry, float]:
        """The encoded entry (waiting for the encoder if needed) and the milliseconds waited."""
        entry = self.image(key)
        start = time.perf_counter()
        if not entry.ready.wait(ENCODE_WAIT_S):
            raise Busy(f"image {key} is still waiting for the encoder after {ENCODE_WAIT_S:.0f} s")
        if entry.error is not None:
            raise InputError(entry.error)
        return entry, (time.perf_counter() - start) * 1e3

    # ------------------------------------------------------------------ clicks
    def check_clicks(self, key: str, clicks: Sequence[Click]) -> None:
        """Refuse clicks outside the image or too many of them (before any work)."""
        geometry = self.image(key).geometry
        if len(clicks) > self.config.max_clicks:
            raise InputError(f"{len(clicks)} clicks: more than the limit of {self.config.max_clicks}")
        for click in clicks:
            to_target_click(click, geometry)

    def segment(self, key: str, clicks: Sequence[Click]) -> Segmentation:
        """The prediction after ``clicks`` (image pixels, in order) on image ``key``."""
        start = time.perf_counter()
        clicks = tuple(clicks)
        self.check_clicks(key, clicks)
        entry, waited = self._features(key)
        geometry = entry.geometry
        if not clicks:
            return Segmentation(key, geometry.width, geometry.height, clicks, None, None,
                                _timings(start, waited, 0.0, 0))
        features = entry.features
        assert features is not None
        decode_ms = 0.0

        def decode(prompt_map: np.ndarray) -> dict[str, np.ndarray]:
            nonlocal decode_ms
            with self.gate.click(), self._decoder_lock:
                run_start = time.perf_counter()
                out = self._decoder.run({**features, REF_LABEL: prompt_map})
                decode_ms += (time.perf_counter() - run_start) * 1e3
            return out

        with self.memory.hold_mask(geometry.width, geometry.height, self.target_size):
            state, runs = segment(decode, key, geometry, clicks, self.states, later=True)
            assert state is not None
            mask = logits_to_mask(state.logits, geometry)
        with self._counts_lock:
            self.decoder_runs += runs
        return Segmentation(key, geometry.width, geometry.height, clicks, mask, state.num_routed,
                            _timings(start, waited, decode_ms, runs))

    # ------------------------------------------------------------------ state
    def stats(self) -> dict[str, object]:
        return {"kernels": self._decoder.kernels,  # how the decoder runs its custom ops
                "encoder_runs": self.encoder_runs, "decoder_runs": self.decoder_runs,
                "encoder_queue": self._queue.qsize(), "cache": self.store.stats(),
                "click_states": len(self.states), "image_memory_bytes": self.memory.held_bytes}

    def close(self) -> None:
        """Stop the encoder worker after the images already queued, and say so in the log."""
        waiting = self._queue.qsize()
        if waiting:
            log.info("encoding the %d images still queued before stopping", waiting)
        self._queue.put(None)
        self._worker.join(timeout=ENCODE_WAIT_S)
        self.states.close()
        log.info("encoder stopped after %d encoder runs", self.encoder_runs)


def _lock_unless_concurrent(runner: runtime.GraphRunner) -> contextlib.AbstractContextManager[object]:
    """Nothing for a runner that takes concurrent runs, else a lock that serialises them."""
    return contextlib.nullcontext() if runner.concurrent else threading.Lock()


def features_bytes(manifest: Manifest) -> int:
    """Bytes of one image's encoder outputs, from the artifact's contract."""
    outputs = manifest.io["encoder"].outputs.values()
    return sum(int(np.prod(spec.shape)) * np.dtype(spec.dtype).itemsize for spec in outputs)


def check_cache_holds_an_image(manifest: Manifest, cache_mb: int) -> None:
    """Refuse a feature cache too small for one image's encoder outputs: every image would be
    dropped as soon as it is encoded, and no session could open."""
    need = features_bytes(manifest)
    if need > cache_mb * MB:
        raise InputError(f"--cache-mb {cache_mb} cannot hold one image: this export's encoder outputs take "
                         f"{need / MB:.1f} MiB per image")


def _timings(start: float, waited: float, decode_ms: float, runs: int) -> dict[str, float]:
    return {"encode_wait_ms": round(waited, 2), "decode_ms": round(decode_ms, 2), "decoder_runs": runs,
            "total_ms": round((time.perf_counter() - start) * 1e3, 2)}
