"""CannyNet: a fixed Canny edge detector followed by a small learned pyramid.

The edge maps feed the DLU head's upsampling stages (256 ch @ 1/8, 64 @ 1/4, 16 @ 1/2, 4 @ 1/1).
The Canny filters are stored in the checkpoint (``canny.*``), so they are parameters here too.

Two numerics: ``official`` repeats the official CPU arithmetic bit for bit. ``portable`` is what
the exported encoder computes, defined so that any backend can reproduce it: gradient components
at rounding level (below ``PORTABLE_GRADIENT_FLOOR``) count as zero in the orientation, and the
per-map L2 norms are summed one axis at a time. Both are measured in ``tests/test_model_golden``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from i2f_deploy.config import EdgeDetectorConfig
from i2f_deploy.preprocess import MEAN_BGR, STD_BGR

NUMERICS = ("official", "portable")
# Real edges give gradients >= 1e-4 on the 0..1 scale; backends that sum the Sobel taps in another
# order leave +-1 ulp (<= 1.5e-7) where PyTorch gets exact zeros, and atan2 of that noise is chaos.
PORTABLE_GRADIENT_FLOOR = 5e-7


def _gaussian_1d(size: int = 5, sigma: float = 1.0) -> Tensor:
    offsets = torch.arange(size, dtype=torch.float64) - size // 2
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (weights / weights.sum()).float()


def _direction_filters() -> Tensor:
    """Eight 3x3 filters: centre minus the neighbour at 0, 45, ..., 315 degrees."""
    neighbours = [(1, 2), (2, 2), (2, 1), (2, 0), (1, 0), (0, 0), (0, 1), (0, 2)]
    filters = torch.zeros(8, 1, 3, 3)
    for index, (row, col) in enumerate(neighbours):
        filters[index, 0, 1, 1] = 1.0
        filters[index, 0, row, col] = -1.0
    return filters


class Canny(nn.Module):
    """Differentiable-free Canny: blur, Sobel, 8-direction non-maximum suppression, threshold."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold
        self.gradient_floor = 0.0
        self.atan2: Callable[[Tensor, Tensor], Tensor] = torch.atan2  # swappable: the ONNX export needs a decomposition defined at (0, 0)
        gauss = _gaussian_1d()
        sobel = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        self.g_h = nn.Conv2d(1, 1, (1, 5), padding=(0, 2), bias=False)
        self.g_v = nn.Conv2d(1, 1, (5, 1), padding=(2, 0), bias=False)
        self.sobh = nn.Conv2d(1, 1, 3, padding=1, bias=False)
        self.sobv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
        self.dirf = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        with torch.no_grad():
            self.g_h.weight.copy_(gauss.view(1, 1, 1, 5))
            self.g_v.weight.copy_(gauss.view(1, 1, 5, 1))
            self.sobh.weight.copy_(sobel.view(1, 1, 3, 3))
            self.sobv.weight.copy_(sobel.t().contiguous().view(1, 1, 3, 3))
            self.dirf.weight.copy_(_direction_filters())
        self.requires_grad_(False)

    def orientation(self, gy: Tensor, gx: Tensor) -> Tensor:
        """Gradient direction in degrees, 0..360, quantised to multiples of 45."""
        if self.gradient_floor:
            gy = torch.where(gy.abs() < self.gradient_floor, torch.zeros_like(gy), gy)
            gx = torch.where(gx.abs() < self.gradient_floor, torch.zeros_like(gx), gx)
        degrees = self.atan2(gy, gx) * (180.0 / math.pi) + 180.0
        return torch.round(degrees / 45.0) * 45.0

    def forward(self, image: Tensor) -> Tensor:
        """[B,3,H,W] in 0..1 -> [B,5,H,W]: magnitude, orientation, thin, thresholded, early."""
        blurred = [self.g_v(self.g_h(channel)) for channel in image.chunk(3, dim=1)]
        grads_x = [self.sobh(channel) for channel in blurred]
        grads_y = [self.sobv(channel) for channel in blurred]
        magnitude = sum((gx * gx + gy * gy).sqrt() for gx, gy in zip(grads_x, grads_y))
        orientation = self.orientation(sum(grads_y), sum(grads_x))

        neighbour_diffs = self.dirf(magnitude)
        forward_dir = torch.remainder(orientation / 45.0, 8).long()
        backward_dir = torch.remainder(orientation / 45.0 + 4, 8).long()
        ahead = torch.gather(neighbour_diffs, 1, forward_dir)
        behind = torch.gather(neighbour_diffs, 1, backward_dir)
        is_max = torch.minimum(ahead, behind) > 0
        zero = torch.zeros_like(magnitude)
        thin = torch.where(is_max, magnitude, zero)
        thresholded = torch.where(thin < self.threshold, zero, thin)
        early = torch.where(magnitude < self.threshold, zero, magnitude)
        return torch.cat([magnitude, orientation, thin, thresholded, early], dim=1)


def normalise_maps(maps: Tensor) -> Tensor:
    """Each map divided by its L2 norm over H x W, as the official detector does."""
    return F.normalize(maps, p=2, dim=(-2, -1))  # type: ignore[arg-type]  # torch's stub says int; norm takes a tuple


def sum_over_plane(x: Tensor) -> Tensor:
    """Sum over the last two axes as two matrix products with ones: [..., H, W] -> [..., 1, 1].

    Written as reductions, the sum is fused by graph optimisers into one ReduceSum over H*W,
    which ONNX Runtime and OpenVINO accumulate with relative errors up to 2.5e-4 on 512 x 512
    edge maps; their GEMM kernels keep it near 1e-6. The ones are shaped after slices of ``x``
    rather than from its sizes: on crops sized at run time, OpenVINO cannot bound size arithmetic.
    """
    ones_by_column = torch.ones_like(x[..., :1, :]).transpose(-1, -2)  # [..., W, 1]
    ones_by_row = torch.ones_like(x[..., :, :1]).transpose(-1, -2)  # [..., 1, H]
    return torch.matmul(ones_by_row, torch.matmul(x, ones_by_column))


def normalise_maps_by_rows(maps: Tensor) -> Tensor:
    """``normalise_maps`` with the sum of squares taken as row sums, then a sum of rows.

    PyTorch's single reduction over 512 x 512 is off by 1.3e-4 (relative) on the orientation map,
    ONNX Runtime's ReduceL2 by a different amount, and the GroupNorms downstream amplify either
    into edge-map differences of 4e-3. Matrix products with ones stay within about 1e-6 of the
    exact norm in PyTorch, ONNX Runtime and OpenVINO alike, and graph optimisers leave them be.
    """
    return maps / sum_over_plane(maps * maps).sqrt().clamp_min(1e-12)


class ResnetBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(1, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(1, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return x + h


class CannyNet(nn.Module):
    """Edge pyramid: Canny maps, L2-normalised per map, then ResNet levels at strides 1..8."""

    # buffers, registered in __init__
    mean: Tensor
    std: Tensor

    def __init__(self, config: EdgeDetectorConfig) -> None:
        super().__init__()
        self.threshold = config.threshold
        widths = [config.downscale**i for i in range(1, len(config.strides) + 1)]
        self.canny = Canny(config.threshold)
        self.numerics = "official"
        self.normalise_maps = normalise_maps
        self.register_buffer("mean", torch.tensor(MEAN_BGR).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD_BGR).view(1, 3, 1, 1), persistent=False)
        self.conv1 = nn.Conv2d(5, widths[0], 3, padding=1)
        self.block_list = nn.ModuleList(
            nn.Sequential(*[ResnetBlock(width) for _ in range(config.depth)]) for width in widths
        )
        self.lateral_convs = nn.ModuleList(nn.Conv2d(width, width, 1) for width in widths)
        self.downsamplers = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], 3, stride=stride, padding=1)
            for i, stride in enumerate(config.strides[:-1])
        )

    def use_numerics(self, numerics: str) -> None:
        """Switch between the ``official`` and the ``portable`` arithmetic (see the module doc)."""
        if numerics not in NUMERICS:
            raise ValueError(f"numerics must be one of {NUMERICS}, got {numerics!r}")
        portable = numerics == "portable"
        self.numerics = numerics
        self.canny.gradient_floor = PORTABLE_GRADIENT_FLOOR if portable else 0.0
        self.normalise_maps = normalise_maps_by_rows if portable else normalise_maps

    def forward(self, image: Tensor) -> list[Tensor]:
        """Normalised image [B,3,S,S] -> edge maps, coarsest first."""
        pixels = ((image * self.std + self.mean) / 255.0).clamp(0.0, 1.0)
        edges = self.normalise_maps(self.canny(pixels))
        x = self.conv1(edges)
        outputs = []
        for level, blocks in enumerate(self.block_list):
            x = blocks(x)
            outputs.append(self.lateral_convs[level](x))
            if level < len(self.downsamplers):
                x = self.downsamplers[level](x)
        return outputs[::-1]
