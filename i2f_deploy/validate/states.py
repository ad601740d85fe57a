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
        "first-click": add_clicks(initial_prompt_map(size), [Click(size // 2, size // 3, True)]),
        "tiny-object-at-corner": _object_map(size, (yy - r) ** 2 + (xx - r) ** 2 <= r * r, Click(r, r, True)),
        "object-touching-border": _object_map(
            size, ((yy - size // 2) / (size // 5)) ** 2 + (xx / (size // 6)) ** 2 <= 1, Click(size // 2, 2, True)
        ),
        "click-on-border-pixel": add_clicks(initial_prompt_map(size), [Click(0, size - 1, True), Click(size - 1, 0, False)]),
    }
