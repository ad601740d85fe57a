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


def scenario_prompt_map(name: str, size: int) -> np.ndarray:
    """uint8 [1,1,size,size] prompt map of scenario ``name`` at target ``size``."""
    centre = size // 2
    ref_label = add_clicks(initial_prompt_map(size), [Click(x=centre, y=centre, positive=True)])
    if name == "first-click":
        return ref_label
    radius = OBJECT_RADIUS_AT_1024[name] * size / 1024
    rows, cols = np.ogrid[:size, :size]
    disc = (rows - centre) ** 2 + (cols - centre) ** 2 <= radius**2
    ref_label = apply_prediction(ref_label, disc)
    rim = min(size - 1, int(centre + 0.9 * radius))
    return add_clicks(ref_label, [Click(x=rim, y=centre, positive=True)])
