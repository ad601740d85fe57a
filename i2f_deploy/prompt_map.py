"""The prompt map (``ref_label``) the decoder reads, and how clicks and predictions update it.

The official model is steered by a uint8 map of shape [1, 1, S, S] at the target size S, with five
values (below). This module reproduces, in NumPy and OpenCV's table look-up (products run without
torch), what the official test loop does with it:

* ``add_clicks``: one call of the official ``update_ref_label_by_point_lists`` with the *new*
  clicks only (``fast_mode=True``, inner radius 5, outer radius 0): the clicks are first encoded on
  a fresh all-unknown map, then merged into the current map by the update rules.
* ``apply_prediction``: the official ``update_ref_label_by_prediction`` (predicted foreground gets
  the rule of "possibly foreground", predicted background that of "possibly background").

All functions are pure: they return new arrays and never modify their inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import numpy as np

from i2f_deploy.errors import InputError

__all__ = [
    "DEFINITELY_BACKGROUND",
    "DEFINITELY_FOREGROUND",
    "INNER_RADIUS",
    "NUM_PROMPT_VALUES",
    "OUTER_RADIUS",
    "POSSIBLY_BACKGROUND",
    "POSSIBLY_FOREGROUND",
    "UNKNOWN",
    "Click",
    "add_clicks",
    "apply_prediction",
    "encode_clicks",
    "initial_prompt_map",
    "merge_prompt_map",
    "scale_click",
    "validate_prompt_map",
]

# Values of the prompt map (official ``REF_*`` constants).
DEFINITELY_BACKGROUND = 0
POSSIBLY_BACKGROUND = 1
UNKNOWN = 2
POSSIBLY_FOREGROUND = 3
DEFINITELY_FOREGROUND = 4
NUM_PROMPT_VALUES = 5
_MODES = (DEFINITELY_BACKGROUND, POSSIBLY_BACKGROUND, UNKNOWN, POSSIBLY_FOREGROUND,
          DEFINITELY_FOREGROUND)
_OPPOSITE = {POSSIBLY_BACKGROUND: POSSIBLY_FOREGROUND, POSSIBLY_FOREGROUND: POSSIBLY_BACKGROUND}

# Disc radii of the official test configuration (``inner_radius=5, outer_radius=0``).
INNER_RADIUS = 5.0
OUTER_RADIUS = 0.0

_POSITIVE_WORDS = {"positive", "pos", "+", "p", "fg", "foreground"}
_NEGATIVE_WORDS = {"negative", "neg", "-", "n", "bg", "background"}


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True, kw_only=True)
class Click:
    """One click at integer pixel (x, y) (column, row); ``positive`` marks foreground.

    Keyword-only (``Click(x=3, y=5, positive=True)``): x comes first everywhere in the public API
    and on screen, while arrays index ``[y, x]``; naming them keeps the two from being swapped.
    Coordinates are whatever grid the caller works in (image or target size); converting between
    them is ``scale_click`` / ``preprocess.to_target_click``.
    """

    x: int
    y: int
    positive: bool

    def __post_init__(self) -> None:
        if not _is_int(self.x) or not _is_int(self.y):
            raise InputError(f"click coordinates must be integers, got x={self.x!r}, y={self.y!r}")
        if self.x < 0 or self.y < 0:
            raise InputError(f"click coordinates must be non-negative, got x={self.x}, y={self.y}")
        if not isinstance(self.positive, (bool, np.bool_)):
            raise InputError(f"click 'positive' must be a bool, got {self.positive!r}")
        # Normalise numpy scalars to plain Python values (hashing, JSON, int() semantics).
        object.__setattr__(self, "x", int(self.x))
        object.__setattr__(self, "y", int(self.y))
        object.__setattr__(self, "positive", bool(self.positive))

    @property
    def kind(self) -> str:
        """The official click mode string: ``"positive"`` or ``"negative"``."""
        return "positive" if self.positive else "negative"

    @staticmethod
    def parse_kind(kind: str) -> bool:
        """``True`` for a positive kind word, ``False`` for a negative one; else InputError."""
        word = str(kind).strip().lower()
        if word in _POSITIVE_WORDS:
            return True
        if word in _NEGATIVE_WORDS:
            return False
        raise InputError(f"unknown click kind {kind!r} (expected 'positive' or 'negative')")

    @classmethod
    def parse(cls, text: str) -> Click:
        """Parse a user-facing ``"x,y,positive|negative"`` string (x first, as on screen)."""
        parts = [p.strip() for p in str(text).split(",")]
        if len(parts) != 3:
            raise InputError(f"click {text!r} must look like 'x,y,positive' or 'x,y,negative'")
        try:
            x, y = int(parts[0]), int(parts[1])
        except ValueError:
            raise InputError(f"click {text!r}: x and y must be integers") from None
        return cls(x=x, y=y, positive=cls.parse_kind(parts[2]))

    @classmethod
    def from_official(cls, point: Sequence[Any]) -> Click:
        """Build from an official ``(y, x, "positive"|"negative")`` tuple."""
        if len(point) != 3:
            raise InputError(f"official click must be (y, x, kind), got {point!r}")
        y, x, kind = point
        if kind not in ("positive", "negative"):
            raise InputError(f"unknown click kind {kind!r} (expected 'positive' or 'negative')")
        return cls(x=x, y=y, positive=kind == "positive")

    def to_official(self) -> tuple[int, int, str]:
        """The official ``(y, x, kind)`` tuple."""
        return (self.y, self.x, self.kind)


def scale_click(click: Click, scale: float) -> Click:
    """Scale a click like the official loop: ``int(scale * y)``, ``int(scale * x)`` (truncation)."""
    if not isinstance(click, Click):
        raise InputError(f"expected a Click, got {type(click).__name__}")
    scale = float(scale)
    if not np.isfinite(scale) or scale <= 0:
        raise InputError(f"click scale must be a positive finite number, got {scale}")
    return Click(x=int(scale * click.x), y=int(scale * click.y), positive=click.positive)


def initial_prompt_map(size: int) -> np.ndarray:
    """The map before any interaction: all "unknown", uint8 [1, 1, size, size]."""
    if not _is_int(size) or size <= 0:
        raise InputError(f"prompt map size must be a positive integer, got {size!r}")
    return np.full((1, 1, int(size), int(size)), UNKNOWN, dtype=np.uint8)


def validate_prompt_map(ref_label: Any, size: int | None = None) -> np.ndarray:
    """Check a prompt map is uint8 [1, 1, S, S] with values 0..4 (and S == ``size`` if given);
    returns it as an ndarray."""
    if not isinstance(ref_label, np.ndarray):
        raise InputError(f"prompt map must be a numpy array, got {type(ref_label).__name__}")
    if ref_label.dtype != np.uint8:
        raise InputError(f"prompt map must be uint8, got {ref_label.dtype}")
    shape = ref_label.shape
    if len(shape) != 4 or shape[0] != 1 or shape[1] != 1 or shape[2] != shape[3] or shape[2] == 0:
        raise InputError(f"prompt map must have shape [1, 1, S, S] with S > 0, got {list(shape)}")
    if size is not None and shape[2] != size:
        raise InputError(f"prompt map must be {size}x{size} (the target size), got {shape[2]}x{shape[3]}")
    if ref_label.max() > DEFINITELY_FOREGROUND:
        raise InputError(f"prompt map values must be 0..4, found {int(ref_label.max())}")
    return ref_label


def _merge_rule(old: int, new: int) -> int:
    """Official ``update_ref_labels_with_masks`` for one pixel whose new label is ``new``:
    "definitely" values overwrite; "possibly" values write only over 2 and turn the opposite
    "possibly" back into 2; 2 changes nothing."""
    if new in (DEFINITELY_BACKGROUND, DEFINITELY_FOREGROUND):
        return new
    if new == UNKNOWN or old not in (UNKNOWN, _OPPOSITE[new]):
        return old
    return new if old == UNKNOWN else UNKNOWN


# The merge as a table indexed by ``old * NUM_PROMPT_VALUES + new``: every pixel of the new labels
# holds one value, so of the official five passes (one per value) only that value's rule touches it.
# 256 entries (the rest unused): OpenCV's look-up table of a uint8 image.
_MERGE = np.zeros(256, dtype=np.uint8)
_MERGE[:NUM_PROMPT_VALUES ** 2] = [_merge_rule(old, new) for old in _MODES for new in _MODES]


def _merge(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """``_merge_rule`` on each pixel of two uint8 arrays of one shape holding 0..4."""
    import cv2  # its uint8 table look-up is several times faster than NumPy's (which widens the indices)

    index = old * np.uint8(NUM_PROMPT_VALUES)
    index += new
    return cv2.LUT(index.reshape(-1, index.shape[-1]), _MERGE).reshape(index.shape)


def _disc_mask(clicks: Sequence[Click], box: tuple[int, int, int, int], radius_sq: float) -> np.ndarray:
    """Pixels of ``box`` (y0, y1, x0, x1) whose squared distance to the nearest click is
    <= radius_sq (official ``<=``)."""
    y0, y1, x0, x1 = box
    mask = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    reach = _reach(radius_sq)
    for c in clicks:
        top, bottom = max(c.y - reach, y0), min(c.y + reach + 1, y1)
        left, right = max(c.x - reach, x0), min(c.x + reach + 1, x1)
        if top >= bottom or left >= right:
            continue
        dy = np.arange(top, bottom, dtype=np.int64)[:, None] - c.y
        dx = np.arange(left, right, dtype=np.int64)[None, :] - c.x
        mask[top - y0:bottom - y0, left - x0:right - x0] |= (dy * dy + dx * dx) <= radius_sq
    return mask


def _reach(radius_sq: float) -> int:
    """The largest integer offset a disc of squared radius ``radius_sq`` reaches along an axis."""
    return int(np.floor(np.sqrt(max(radius_sq, 0.0))))


def _clicks_box(clicks: Sequence[Click], size: int, radius_sq: float) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the part of the [size, size] map the discs of ``clicks`` can touch."""
    reach = _reach(radius_sq)
    ys = [c.y for c in clicks]
    xs = [c.x for c in clicks]
    return (max(min(ys) - reach, 0), min(max(ys) + reach + 1, size),
            max(min(xs) - reach, 0), min(max(xs) + reach + 1, size))


def _encode(clicks: Sequence[Click], box: tuple[int, int, int, int], inner_radius: float,
            outer_radius: float) -> np.ndarray:
    """The official fast encoding of ``clicks`` on the part ``box`` of a fresh all-unknown map
    (``encode_clicks`` says how)."""
    pos = [c for c in clicks if c.positive]
    neg = [c for c in clicks if not c.positive]
    outer_sq = (inner_radius + outer_radius) ** 2
    inner_sq = inner_radius ** 2
    y0, y1, x0, x1 = box
    out = np.full((y1 - y0, x1 - x0), UNKNOWN, dtype=np.uint8)
    outer_pos = _disc_mask(pos, box, outer_sq) if pos else None
    outer_neg = _disc_mask(neg, box, outer_sq) if neg else None
    if outer_pos is not None:
        out[outer_pos] = POSSIBLY_FOREGROUND
    if outer_neg is not None:
        out[outer_neg] = POSSIBLY_BACKGROUND
    if outer_pos is not None and outer_neg is not None:
        out[outer_pos & outer_neg] = UNKNOWN
    order: list[tuple[int, bool]] = []  # (index of first click of the kind, positive)
    if pos:
        order.append((next(i for i, c in enumerate(clicks) if c.positive), True))
    if neg:
        order.append((next(i for i, c in enumerate(clicks) if not c.positive), False))
    for _, positive in sorted(order):
        disc = _disc_mask(pos if positive else neg, box, inner_sq)
        out[disc] = DEFINITELY_FOREGROUND if positive else DEFINITELY_BACKGROUND
    return out


def encode_clicks(
    clicks: Sequence[Click],
    size: int,
    inner_radius: float = INNER_RADIUS,
    outer_radius: float = OUTER_RADIUS,
) -> np.ndarray:
    """Official "fast" click encoding on a fresh all-unknown [size, size] uint8 map.

    Outer discs paint 3 (positive) / 1 (negative), overlaps of the two back to 2; then inner discs
    paint 4 / 0, the kind whose *first* click comes first in ``clicks`` painted first (so the
    other kind wins where they overlap). With the default radii (5, 0) outer == inner.
    """
    return _encode(clicks, (0, size, 0, size), inner_radius, outer_radius)


def merge_prompt_map(ref_label: np.ndarray, new_labels: np.ndarray) -> np.ndarray:
    """Official ``update_ref_labels``: apply the rule of each value 0, 1, 2, 3, 4 in that order.

    "Definitely" values overwrite; "possibly" values write only over 2 and turn the opposite
    "possibly" back into 2; 2 changes nothing.
    """
    ref_label = validate_prompt_map(ref_label)
    size = ref_label.shape[-1]
    if not isinstance(new_labels, np.ndarray) or new_labels.shape not in (
            (size, size), (1, 1, size, size)):
        raise InputError(f"new labels must be an array of shape [{size}, {size}] or "
                         f"[1, 1, {size}, {size}] to merge into the prompt map")
    if not np.issubdtype(new_labels.dtype, np.integer) or new_labels.min() < 0 \
            or new_labels.max() > DEFINITELY_FOREGROUND:
        raise InputError("new labels must be integers 0..4 to merge into the prompt map")
    return _merge(ref_label, new_labels.reshape(ref_label.shape).astype(np.uint8))


def _check_clicks(clicks: Iterable[Click], size: int) -> list[Click]:
    result = []
    for c in clicks:
        if not isinstance(c, Click):
            raise InputError(f"expected Click objects, got {type(c).__name__}")
        if not (0 <= c.y < size and 0 <= c.x < size):
            raise InputError(
                f"click (x={c.x}, y={c.y}) lies outside the {size}x{size} prompt map")
        result.append(c)
    return result


def add_clicks(ref_label: np.ndarray, clicks: Iterable[Click]) -> np.ndarray:
    """Add new clicks (in target coordinates) to the map: one official
    ``update_ref_label_by_point_lists`` call (fast mode, radii 5/0) with just these clicks.

    Pass only the clicks that are new since the last call: the official loop never re-encodes
    earlier clicks, and the order of kinds inside one call decides overlaps. Only the box the
    clicks' discs reach is encoded and merged: elsewhere the fresh map holds 2, which changes
    nothing, so a click costs its disc plus one copy of the map.
    """
    ref_label = validate_prompt_map(ref_label)
    size = ref_label.shape[-1]
    clicks = _check_clicks(clicks, size)
    if not clicks:
        return ref_label.copy()
    box = _clicks_box(clicks, size, (INNER_RADIUS + OUTER_RADIUS) ** 2)
    y0, y1, x0, x1 = box
    out = ref_label.copy()
    window = out[0, 0, y0:y1, x0:x1]
    window[...] = _merge(window, _encode(clicks, box, INNER_RADIUS, OUTER_RADIUS))
    return out


def apply_prediction(ref_label: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Fold a prediction (bool [S, S] or [1, 1, S, S], True = foreground) into the map.

    Official ``update_ref_label_by_prediction``: foreground pixels get the rule of 3, then
    background pixels the rule of 1 (so 2 -> 3/1, opposite "possibly" -> 2, 0/4 unchanged): one
    merge with new labels 3 / 1, a table look-up a pixel.
    """
    ref_label = validate_prompt_map(ref_label)
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        raise InputError("prediction mask must be a bool numpy array (e.g. logits > 0)")
    size = ref_label.shape[-1]
    if mask.shape not in ((size, size), (1, 1, size, size)):
        raise InputError(
            f"prediction mask shape {list(mask.shape)} does not match the prompt map "
            f"[1, 1, {size}, {size}]")
    # The new label of each pixel is 3 where predicted foreground, else 1.
    new = mask.reshape(ref_label.shape).view(np.uint8) * np.uint8(POSSIBLY_FOREGROUND - POSSIBLY_BACKGROUND)
    new += np.uint8(POSSIBLY_BACKGROUND)
    return _merge(ref_label, new)
