"""Dynamic Local Upsampling (DLU): a light MLP finds the object on the stride-16 grid, and only
the box around it is upsampled x16 with the edge maps; the rest of the canvas stays at -100."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from i2f_deploy.config import DecodeHeadConfig
from i2f_deploy.model.routing import Box, bounding_box_tensor, box_from_tensor, crop, paste

OUTSIDE_LOGIT = -100.0


def bicubic_x2(x: Tensor) -> Tensor:
    """Bicubic x2, align_corners=False, as the official head (explicit size: no float sizes)."""
    return F.interpolate(x, size=(2 * x.shape[-2], 2 * x.shape[-1]), mode="bicubic", align_corners=False)


class Upsample2x(nn.Module):
    """GroupNorm -> bicubic x2 -> + edge map -> 3x3 conv (channels / 4) -> SiLU (not last)."""

    def __init__(self, channels: int, silu: bool) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(1, channels)
        self.conv = nn.Conv2d(channels, round(channels / 4), 3, padding=1)
        self.silu = silu

    def forward(self, x: Tensor, edge_map: Tensor) -> Tensor:
        x = self.conv(bicubic_x2(self.norm(x)) + edge_map)
        return F.silu(x) if self.silu else x


class LocatorMLP(nn.Sequential):
    """1x1-conv MLP 256 -> 64 -> 16 -> 4 -> 1 with SiLU between: the coarse logits."""

    def __init__(self, dim: int, num_stages: int) -> None:
        super().__init__()
        widths = [dim // 4**i for i in range(num_stages + 1)]
        for c_in, c_out in pairwise(widths):
            self.append(nn.Conv2d(c_in, c_out, 1))
            if c_out > 1:
                self.append(nn.SiLU())


@dataclass
class HeadOutput:
    logits: Tensor  # [1,1,S,S]
    coarse_logits: Tensor  # [1,1,h,w]
    box_values: Tensor  # int64 [4] on the token grid
    box: Box  # the same, as ints


class DynamicLocalUpsampling(nn.Module):
    """``dense=True`` is the speed baseline: upsample the whole image whatever the MLP finds."""

    def __init__(self, config: DecodeHeadConfig, dense: bool = False) -> None:
        super().__init__()
        self.threshold = config.threshold
        self.dense = dense
        self.upsamplers = nn.ModuleList(
            Upsample2x(config.embed_dim // 4**i, silu=i < config.num_upsamplers - 1)
            for i in range(config.num_upsamplers)
        )
        self.mlp = LocatorMLP(config.embed_dim, config.num_upsamplers)
        self.scale = 2**config.num_upsamplers

    def upsample(self, features: Tensor, edge_maps: list[Tensor], box: Box) -> Tensor:
        """Logits of ``box`` (token units) at full resolution, computed on the crop only."""
        x = crop(features, box)
        for level, (stage, edge_map) in enumerate(zip(self.upsamplers, edge_maps)):
            x = stage(x, crop(edge_map, box.scaled(2 ** (level + 1))))
        return x

    def locate(self, features: Tensor) -> tuple[Tensor, Tensor, Box]:
        """Coarse logits [1,1,h,w] and the box (int64 [4] and ints, token grid) to upsample."""
        coarse = self.mlp(features)
        grid_h, grid_w = features.shape[-2:]
        values = torch.tensor([0, 0, grid_w, grid_h]) if self.dense else bounding_box_tensor(coarse[0, 0] > self.threshold)
        return coarse, values, box_from_tensor(values, grid_h, grid_w)

    def forward(self, features: Tensor, edge_maps: list[Tensor]) -> HeadOutput:
        """features [1,C,h,w] -> logits [1,1,16h,16w], -100 outside the located box."""
        coarse, values, box = self.locate(features)
        grid_h, grid_w = features.shape[-2:]
        local = self.upsample(features, edge_maps, box)
        logits = paste(local, box.scaled(self.scale), grid_h * self.scale, grid_w * self.scale, OUTSIDE_LOGIT)
        return HeadOutput(logits, coarse, values, box)
