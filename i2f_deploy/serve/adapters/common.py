"""What the adapters share: points from a tool -> clicks on the image, checked."""

from __future__ import annotations

import math
from typing import Any

from i2f_deploy.errors import InputError
from i2f_deploy.prompt_map import Click


def to_click(x: Any, y: Any, positive: bool, width: int, height: int) -> Click:
    """A tool's point (float or int pixels) -> an integer click; 422 when outside the image."""
    try:
        fx, fy = float(x), float(y)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond any float
        raise InputError(f"point ({x!r}, {y!r}) is not a pair of numbers") from None
    if not (math.isfinite(fx) and math.isfinite(fy) and 0 <= fx < width and 0 <= fy < height):
        raise InputError(f"point ({x}, {y}) lies outside the {width}x{height} image")
    return Click(y=int(fy), x=int(fx), positive=positive)


def check_count(count: int, max_clicks: int) -> None:
    """422 for more points than ``--max-clicks``, checked before the image is decoded or anything
    else is done with them."""
    if count > max_clicks:
        raise InputError(f"{count} points: more than the limit of {max_clicks}")


def pair(point: Any) -> tuple[Any, Any]:
    """``[x, y]`` from a tool's JSON, with a clear error for anything else."""
    if not isinstance(point, (list, tuple)) or len(point) != 2:
        raise InputError(f"a point must be [x, y], got {point!r}")
    return point[0], point[1]
