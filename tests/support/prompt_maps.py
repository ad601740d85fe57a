"""Prompt maps of the tiny 512 model for routing tests: object ellipses with click discs, and
isolated pixels near token edges."""

from __future__ import annotations

import numpy as np
import torch

SIZE = 512
STRIDE = 16


def random_prompt_map(rng: np.random.Generator) -> torch.Tensor:
    """An ellipse of "possibly foreground" on "possibly background", with click discs."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    cy, cx = rng.integers(0, SIZE, 2)
    ry, rx = rng.integers(4, 200, 2)
    label = np.where(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1, 3, 1).astype(np.uint8)
    for value in rng.choice([0, 4], size=rng.integers(1, 4)):
        y, x = rng.integers(0, SIZE, 2)
        label[(yy - y) ** 2 + (xx - x) ** 2 <= 25] = value
    if rng.random() < 0.3:
        y, x = rng.integers(0, SIZE - 40, 2)
        label[y : y + 40, x : x + 40] = 2
    return torch.from_numpy(label)[None, None]


def scattered_prompt_map(rng: np.random.Generator) -> torch.Tensor:
    """Isolated non-background pixels on "definitely background", many of them a few pixels
    from a token edge: the cases where a window reaches into the neighbouring token or not."""
    label = np.zeros((SIZE, SIZE), np.uint8)
    count = rng.integers(1, 12)
    cells = rng.integers(0, SIZE // STRIDE, (count, 2)) * STRIDE
    offsets = rng.choice([0, 1, 2, 3, 4, 12, 13, 14, 15], (count, 2))
    values = rng.choice([1, 3, 4], count)
    label[cells[:, 0] + offsets[:, 0], cells[:, 1] + offsets[:, 1]] = values
    return torch.from_numpy(label)[None, None]
