"""DLU stages for the crop-by-crop tests: crops of a small low-resolution grid (whole image,
borders, corners, one token) and a stage with seeded random weights."""

from __future__ import annotations

import torch

from i2f_deploy.model.head import Upsample2x

GRID_H, GRID_W = 7, 9  # the low-resolution image the crops are taken from
BOXES = {  # left, top, right, bottom on the low-resolution grid
    "whole image": (0, 0, GRID_W, GRID_H),
    "middle": (2, 1, 6, 5),
    "top-left corner": (0, 0, 3, 2),
    "bottom-right corner": (5, 4, GRID_W, GRID_H),
    "left border": (0, 2, 4, 6),
    "right border": (6, 1, GRID_W, 4),
    "one token wide": (4, 0, 5, GRID_H),
    "one token tall": (0, 3, GRID_W, 4),
    "one token": (3, 2, 4, 3),
}


def random_stage(channels: int, seed: int) -> Upsample2x:
    generator = torch.Generator().manual_seed(seed)
    stage = Upsample2x(channels, silu=True)
    with torch.no_grad():
        for parameter in stage.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * (0.3 if parameter.dim() > 1 else 1.0))
    return stage.eval()
