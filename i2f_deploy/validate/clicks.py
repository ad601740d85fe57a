"""The official Inter2Former click simulator and NoC metric, in NumPy/OpenCV (no torch).

Protocol (official ``interact_test`` of ``Inter2FormerClickSegmentorBSQATargetSize`` with
``update_clicks`` -> ``fast_generate_single_click``, ``sfc_inner_k=1.0`` at test, 20 clicks):

1. Clicks are generated at *image* resolution from the current prediction (all background
   before the first click; afterwards the model's logits resized to the zero-padded square
   image, ``> 0``, cropped to H x W) and the ground truth; coordinates are integer ``(y, x)``.
   They are scaled to the target size only when they are encoded into the prompt map
   (``prompt_map.scale_click``: ``int(scale * y)``).
2. The pixels of *all* previous clicks (either kind) are removed from both error regions:
   ``fn = gt & ~pred & ~clicked`` (false negatives), ``fp = pred & ~gt & ~clicked``.
3. Each region's depth is its Euclidean distance transform with the image border counting as
   background: official ``cv2.distanceTransform(pad(mask, 1), DIST_L2, DIST_MASK_PRECISE)``,
   cropped back (it crops to the region's bounding box first, which changes nothing).
4. With ``n`` / ``p`` the largest depth of ``fn`` / ``fp``: both 0 -> no click; ``n > p`` -> a
   positive click in ``fn``; otherwise (ties included) a negative click in ``fp``. So the
   *deepest* error wins, not the largest one by area.
5. The click goes to a pixel at that largest depth. Officially the candidates are the pixels with
   ``dist > max / (1 + eps_float32)`` (in float32) and one is picked uniformly at random with
   Python ``random`` (seeded once with 42 by the runner, so not reproducible per sample).
6. The loop runs a fixed number of iterations (20): each one adds a click if there is one, runs
   the model (also when no click was added) and records the prediction. IoU per iteration is
   ``|pred & gt| / |pred | gt|``; NoC@t is the first 1-based iteration whose IoU is >= t, else
   the number of iterations (the official ``compute_noc`` sets the last IoU to 1.0).

Deviations, both for reproducibility:

* Ties go to the first candidate in row-major order; pass a ``random.Random`` as ``rng`` to get
  the official uniform choice instead (``rng.choice(range(len(candidates)))``, consuming the
  generator exactly like the official call).
* Depths are compared as exact integer squared distances. OpenCV's "precise" transform is off
  by up to ~1 float32 ulp, and which pixels get the rounding error changes from call to call
  (observed with opencv 5.0: identical inputs, different outputs), so with float32 values the
  official candidate set, and in exact ties even the click kind, is itself nondeterministic.
  Exact integers give the mathematically intended result of the official rule every time.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from i2f_deploy.compare import mask_iou
from i2f_deploy.errors import InputError
from i2f_deploy.prompt_map import Click

__all__ = [
    "MAX_CLICKS",
    "NOC_THRESHOLDS",
    "ClickRun",
    "click_loop",
    "deepest_pixels",
    "error_distance",
    "next_click",
    "noc",
]

MAX_CLICKS = 20
NOC_THRESHOLDS = (0.85, 0.90, 0.95)

# Up to this depth, rounding the square of OpenCV's float32 distance recovers the exact integer
# squared distance (its relative error is ~1e-7, so the error of d**2 stays below 0.25 for
# d**2 <= 2**20). Deeper regions get their near-maximum pixels re-measured exactly.
_ROUNDING_EXACT_UP_TO = 1024.0
_CHUNK = 1 << 20  # (pixel, edge pixel) pairs per block in the exact re-measurement


def _as_mask(name: str, value: np.ndarray) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 2:
        raise InputError(f"{name} must be a 2-D mask (H, W), got shape {list(array.shape)}")
    if array.dtype != np.bool_:
        raise InputError(f"{name} must be a bool mask, got {array.dtype}")
    return array


def error_distance(region: np.ndarray) -> np.ndarray:
    """Float32 distance of each region pixel to the nearest non-region pixel or the image border.

    This is the official transform (zero padding makes the border count as background). Its
    values carry OpenCV's ~1 ulp noise; ``deepest_pixels`` turns them into exact integers.
    """
    padded = np.pad(region.astype(np.uint8), 1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return dist[1:-1, 1:-1]


def deepest_pixels(region: np.ndarray) -> tuple[int, np.ndarray]:
    """Exact largest squared depth of a region and its pixels as (y, x) rows in row-major order.

    ``(0, empty)`` for an empty region.
    """
    dist = error_distance(region)
    top = float(dist.max())
    if top == 0.0:
        return 0, np.zeros((0, 2), dtype=np.int64)
    if top <= _ROUNDING_EXACT_UP_TO:
        squared = np.rint(np.square(dist, dtype=np.float64)).astype(np.int64)
        peak = int(squared.max())
        return peak, np.argwhere(squared == peak)
    # Deep region: re-measure the pixels within 1 px of the maximum (OpenCV's error is far below
    # that) against the background pixels 4-adjacent to the region, which always include the
    # nearest one (stepping from any background pixel towards p gets closer).
    near = np.argwhere(region & (dist >= top - 1.0))
    padded = np.pad(region, 1)
    touches = np.zeros_like(padded)
    touches[1:] |= padded[:-1]
    touches[:-1] |= padded[1:]
    touches[:, 1:] |= padded[:, :-1]
    touches[:, :-1] |= padded[:, 1:]
    edge = np.argwhere(touches & ~padded) - 1  # image coordinates; -1 / H / W are the border
    squared = np.empty(len(near), dtype=np.int64)
    step = max(1, _CHUNK // len(edge))
    for i in range(0, len(near), step):
        diff = near[i:i + step, None, :] - edge[None, :, :]
        squared[i:i + step] = np.einsum("nkc,nkc->nk", diff, diff).min(axis=1)
    peak = int(squared.max())
    return peak, near[squared == peak]


def next_click(
    prediction: np.ndarray,
    ground_truth: np.ndarray,
    previous: Sequence[Click] | None = None,
    rng: random.Random | None = None,
) -> Click | None:
    """The click the official protocol adds next, in image coordinates; None without any error.

    ``previous`` are the clicks so far (their pixels are excluded from the error regions).
    Ties between equally deep pixels go to the first in row-major order unless ``rng`` is given
    (then a uniform choice, drawn the way the official code draws it).
    """
    pred = _as_mask("prediction", prediction)
    gt = _as_mask("ground_truth", ground_truth)
    if pred.shape != gt.shape:
        raise InputError(
            f"prediction {list(pred.shape)} and ground truth {list(gt.shape)} differ in shape")
    clicked = np.zeros(gt.shape, dtype=bool)
    for click in previous or ():
        if not isinstance(click, Click):
            raise InputError(f"previous clicks must be Click objects, got {type(click).__name__}")
        if not (click.y < gt.shape[0] and click.x < gt.shape[1]):
            raise InputError(f"previous click (x={click.x}, y={click.y}) lies outside the "
                             f"{gt.shape[0]}x{gt.shape[1]} mask")
        clicked[click.y, click.x] = True
    fn_depth, fn_pixels = deepest_pixels(gt & ~pred & ~clicked)
    fp_depth, fp_pixels = deepest_pixels(pred & ~gt & ~clicked)
    if fn_depth == 0 and fp_depth == 0:
        return None
    positive = fn_depth > fp_depth
    candidates = fn_pixels if positive else fp_pixels
    index = 0 if rng is None else rng.choice(range(len(candidates)))
    y, x = candidates[index]
    return Click(x=int(x), y=int(y), positive=positive)


def noc(
    ious: Iterable[float],
    thresholds: Sequence[float] = NOC_THRESHOLDS,
    max_clicks: int = MAX_CLICKS,
) -> dict[float, int]:
    """Number of clicks to reach each IoU threshold (first 1-based index with IoU >= t), else max.

    Only the first ``max_clicks`` IoUs count; a shorter run that never reaches t also scores
    ``max_clicks`` (the official loop always runs all iterations).
    """
    if max_clicks < 1:
        raise InputError(f"max_clicks must be >= 1, got {max_clicks}")
    values = [float(v) for v in ious][:max_clicks]
    return {
        float(t): next((i + 1 for i, v in enumerate(values) if v >= t), max_clicks)
        for t in thresholds
    }


@dataclass(frozen=True)
class ClickRun:
    """What one simulated session produced: the clicks, one prediction and IoU per iteration."""

    clicks: list[Click]
    predictions: list[np.ndarray]
    ious: list[float]

    def noc(self, thresholds: Sequence[float] = NOC_THRESHOLDS) -> dict[float, int]:
        """NoC of this run, its number of iterations being the maximum."""
        return noc(self.ious, thresholds, max(len(self.ious), 1))


def click_loop(
    step: Callable[[Click | None], np.ndarray],
    ground_truth: np.ndarray,
    num_clicks: int = MAX_CLICKS,
    rng: random.Random | None = None,
) -> ClickRun:
    """Drive ``step`` through the official loop and collect predictions and IoUs.

    Each iteration computes the next click from the last prediction (empty at first) and calls
    ``step(click)``, with ``None`` when no click is due (no error left outside clicked pixels;
    the official loop still runs the model then); ``step`` returns the new bool prediction at
    image resolution.
    """
    gt = _as_mask("ground_truth", ground_truth)
    prediction = np.zeros_like(gt)
    clicks: list[Click] = []
    predictions: list[np.ndarray] = []
    ious: list[float] = []
    for _ in range(num_clicks):
        click = next_click(prediction, gt, clicks, rng)
        if click is not None:
            clicks.append(click)
        prediction = _as_mask("prediction", step(click))
        if prediction.shape != gt.shape:
            raise InputError(f"step returned a {list(prediction.shape)} mask for a "
                             f"{list(gt.shape)} ground truth")
        predictions.append(prediction)
        ious.append(mask_iou(prediction, gt))
    return ClickRun(clicks, predictions, ious)
