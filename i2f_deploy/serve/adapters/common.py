"""What the adapters share: points from a tool -> clicks on the image, checked.

One pixel convention for every tool: a tool's point is a position on the image, which spans
``[0, width] x [0, height]`` (pixel ``i`` covers ``[i, i + 1)``). The click is the pixel under the
point, and the right and bottom edges (``x == width``, Label Studio's 100 %) belong to the last
pixel; a point beyond the edges is refused. The native API takes pixel indices instead
(``0 <= x < width``).
"""

from __future__ import annotations

import math
from typing import Any

from i2f_deploy.errors import InputError
from i2f_deploy.prompt_map import Click


def to_click(x: Any, y: Any, positive: bool, width: int, height: int) -> Click:
    """A tool's point (float or int pixels) -> the click on the pixel under it; 422 off the image."""
    try:
        fx, fy = float(x), float(y)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond any float
        raise InputError(f"point ({x!r}, {y!r}) is not a pair of numbers") from None
    if not (math.isfinite(fx) and math.isfinite(fy) and 0 <= fx <= width and 0 <= fy <= height):
        raise InputError(f"point ({x}, {y}) lies outside the {width}x{height} image (0 <= x <= {width}, 0 <= y <= {height})")
    return Click(x=min(int(fx), width - 1), y=min(int(fy), height - 1), positive=positive)


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


def refuse_prompts(kinds: set[str], how_to_click: str) -> None:
    """422 for prompts the model cannot take (a box, a brush, ...): Inter2Former takes clicks only,
    and an empty answer would leave the user with nothing, or with the tool's unrelated complaint."""
    if kinds:
        raise InputError(f"Inter2Former takes clicks only, not a {', '.join(sorted(kinds))} prompt: {how_to_click}")
