"""``i2f-deploy predict``: segment one image file from a list of clicks and write PNGs.

The clicks are played in order through an ``InteractiveSession`` (one step of the official
interactive loop each), so the result equals what a user clicking the same points in the same
order would see. No torch is imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from i2f_deploy.errors import I2FError, InputError
from i2f_deploy.preprocess import read_image_rgb
from i2f_deploy.prompt_map import Click
from i2f_deploy.runtime.polygons import polygons
from i2f_deploy.runtime.session import InteractiveSession, Prediction

__all__ = ["predict", "render_overlay"]

_MASK_BGR = np.array([255, 144, 30], dtype=np.float32)  # fill colour of the overlay (blue)
_CONTOUR_BGR = (0, 255, 255)
_POSITIVE_BGR = (0, 200, 0)
_NEGATIVE_BGR = (0, 0, 230)


def _check_png(path: str | Path, what: str) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"{what} must be a .png file, got {path}")
    return path


def _write_png(path: Path, array: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", array)
    if not ok:
        raise I2FError(f"could not encode {path} as PNG")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        encoded.tofile(path)
    except OSError as exc:
        raise I2FError(f"could not write {path}: {exc}") from None


def render_overlay(image_rgb: np.ndarray, mask: np.ndarray, clicks: Sequence[Click]) -> np.ndarray:
    """BGR uint8 picture: the mask blended in blue with a yellow outline (``runtime.polygons``),
    positive clicks as green dots and negative ones as red dots (white rims)."""
    bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    out = bgr.astype(np.float32)
    out[mask] = 0.5 * out[mask] + 0.5 * _MASK_BGR
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    thickness = max(1, round(min(mask.shape) / 300))
    cv2.drawContours(out, polygons(mask), -1, _CONTOUR_BGR, thickness, cv2.LINE_AA)
    radius = max(3, round(min(mask.shape) / 100))
    for click in clicks:
        centre = (click.x, click.y)
        cv2.circle(out, centre, radius + 1, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(out, centre, radius, _POSITIVE_BGR if click.positive else _NEGATIVE_BGR, -1, cv2.LINE_AA)
    return out


def predict(
    artifact_dir: str | Path,
    image_path: str | Path,
    clicks: Sequence[Click],
    out_mask: str | Path,
    overlay: str | Path | None = None,
    backend: str = "onnxruntime",
    threads: int | None = None,
) -> Prediction:
    """Segment ``image_path`` with ``clicks`` (image pixels, in order) and write ``out_mask``
    (PNG, 0/255, image size) and, if given, ``overlay`` (PNG). Returns the last prediction."""
    clicks = list(clicks)
    if not clicks:
        raise InputError("predict needs at least one click")
    for click in clicks:
        if not isinstance(click, Click):
            raise InputError(f"clicks must be Click objects, got {type(click).__name__}")
    out_mask = _check_png(out_mask, "the mask output")
    overlay = _check_png(overlay, "the overlay output") if overlay is not None else None
    image = read_image_rgb(image_path)
    height, width = image.shape[:2]
    for click in clicks:  # fail before any model work
        if not (click.x < width and click.y < height):
            raise InputError(f"click (x={click.x}, y={click.y}) lies outside the {width}x{height} "
                             f"image {image_path}")
    prediction: Prediction | None = None
    with InteractiveSession.from_artifact(artifact_dir, backend, threads, cache_size=0, history=0) as session:
        session.set_image(image)
        for click in clicks:
            prediction = session.add_click(click.x, click.y, click.positive)
    assert prediction is not None
    _write_png(out_mask, prediction.mask.astype(np.uint8) * 255)
    if overlay is not None:
        _write_png(overlay, render_overlay(image, prediction.mask, clicks))
    return prediction
