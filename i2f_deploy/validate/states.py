"""Prompt maps that every validation includes: the routing extremes and the positions where
crops meet the image border."""

from __future__ import annotations

import numpy as np

from i2f_deploy.prompt_map import (
    DEFINITELY_BACKGROUND,
    POSSIBLY_BACKGROUND,
    POSSIBLY_FOREGROUND,
    UNKNOWN,
    Click,
    add_clicks,
    initial_prompt_map,
)


def _object_map(size: int, inside: np.ndarray, click: Click) -> np.ndarray:
    label = np.where(inside, POSSIBLY_FOREGROUND, POSSIBLY_BACKGROUND).astype(np.uint8)[None, None]
    return add_clicks(label, [click])


def edge_case_states(size: int) -> dict[str, np.ndarray]:
    """name -> ``ref_label`` [1,1,S,S] uint8."""
    yy, xx = np.mgrid[:size, :size]
    r = max(size // 64, 6)
    return {
        # Every pixel "definitely background": no token routed, and with trained weights no
        # coarse token above threshold (the whole-image DLU box fallback).
        "zero-routed": np.full((1, 1, size, size), DEFINITELY_BACKGROUND, np.uint8),
        "all-routed": np.full((1, 1, size, size), UNKNOWN, np.uint8),
        "first-click": add_clicks(initial_prompt_map(size), [Click(x=size // 3, y=size // 2, positive=True)]),
        "tiny-object-at-corner": _object_map(size, (yy - r) ** 2 + (xx - r) ** 2 <= r * r, Click(x=r, y=r, positive=True)),
        "object-touching-border": _object_map(
            size, ((yy - size // 2) / (size // 5)) ** 2 + (xx / (size // 6)) ** 2 <= 1, Click(x=2, y=size // 2, positive=True)
        ),
        "click-on-border-pixel": add_clicks(initial_prompt_map(size), [Click(x=size - 1, y=0, positive=True),
                                                                      Click(x=0, y=size - 1, positive=False)]),
    }
