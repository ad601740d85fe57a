"""The prompt states a click can be timed on: the first click, and small, medium and large objects.

Object radii are the reference speeds' (MODEL-NOTES: R = 50, 200, 400 px at 1024), scaled to
the target size. An object scenario is the state of the second click: one positive click at
the centre, the previous prediction (a disc of radius R) folded into the map, and a second
positive click near the disc's rim, as a user correcting the boundary would place it.
"""

from __future__ import annotations

import numpy as np

from i2f_deploy.prompt_map import Click, add_clicks, apply_prediction, initial_prompt_map

SCENARIOS = ("first-click", "small", "medium", "large")
OBJECT_RADIUS_AT_1024 = {"small": 50, "medium": 200, "large": 400}


def scenario_clicks(name: str, size: int) -> list[Click]:
    """The clicks of scenario ``name`` at target ``size``, in order: the centre, then (object
    scenarios) the rim of the object's disc."""
    centre = size // 2
    clicks = [Click(x=centre, y=centre, positive=True)]
    if name != "first-click":
        rim = min(size - 1, int(centre + 0.9 * object_radius(name, size)))
        clicks.append(Click(x=rim, y=centre, positive=True))
    return clicks


def object_radius(name: str, size: int) -> float:
    """The radius of object scenario ``name``'s disc at target ``size``."""
    return OBJECT_RADIUS_AT_1024[name] * size / 1024


def scenario_prompt_map(name: str, size: int) -> np.ndarray:
    """uint8 [1,1,size,size] prompt map of scenario ``name`` at target ``size``."""
    first, *rest = scenario_clicks(name, size)
    ref_label = add_clicks(initial_prompt_map(size), [first])
    if not rest:
        return ref_label
    rows, cols = np.ogrid[:size, :size]
    disc = (rows - first.y) ** 2 + (cols - first.x) ** 2 <= object_radius(name, size) ** 2
    return add_clicks(apply_prediction(ref_label, disc), rest)
