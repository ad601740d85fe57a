"""One DLU stage, ``conv3x3(bicubic2x(g) + e) + b``, with its per-click work at low resolution.

Channel mixing commutes with the per-channel bicubic and with the zero-filled shifts of the
convolution taps, so the stage equals

    sum over taps t of shift_t(bicubic2x(W_t . g))  +  conv3x3(e) + b

on the crop. ``conv3x3(e) + b`` depends on the image only: the encoder computes it once over the
whole edge map (:class:`EdgeTerms`), and per click only the crop's border ring differs from it
(the crop pads with zeros where the image has pixels; :func:`_edge_ring`).

The first sum is computed at the low resolution (:class:`FactoredStage`): one 1x1 convolution
mixes ``g`` into 9 maps per output channel (one per tap); then, separably, each output phase of
the x2 grid reads a 5-tap window of the low-resolution maps, the three taps of one axis folded
into one filter per phase; a pixel shuffle interleaves the four phases once. Stage one at 1024
goes from a 4.8 GFLOP convolution at 128x128 to a 1.2 GFLOP mixing at 64x64.

Everything that differs at the crop border lands on the output's border ring, and is subtracted
there alone (:func:`_add_on_ring`): the bicubic clamps its reads to the crop (the
replicate-padded low-resolution maps get that right), the convolution reads zeros one
high-resolution pixel beyond the crop (a single phase and tap per side, ``phase 0, shift -1`` at
the first row or column and ``phase 1, shift +1`` at the last: :func:`_beyond_only`), and the
per-image edge term saw image pixels there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from i2f_deploy.export.stable_norm import standardise
from i2f_deploy.model.head import OUTSIDE_LOGIT, DynamicLocalUpsampling, Upsample2x
from i2f_deploy.model.routing import Box, crop, paste

CUBIC_A = -0.75
EVEN_DISTANCES = (1.75, 0.75, 0.25, 1.25)  # of inputs j-2..j+1 from high-resolution sample 2j
ODD_DISTANCES = (1.25, 0.25, 0.75, 1.75)  # of inputs j-1..j+2 from sample 2j+1
WINDOW = 5  # low-resolution inputs j-2..j+2 that the three taps of one output phase read
HALF_WINDOW = WINDOW // 2
PHASES = 2
SHIFTS = (-1, 0, 1)  # a 3x3 tap's offset along one axis, at the high resolution


def cubic_weight(distance: float) -> float:
    """Keys' cubic convolution kernel with A = -0.75, as PyTorch and OpenCV use it."""
    x = abs(distance)
    if x <= 1:
        return ((CUBIC_A + 2) * x - (CUBIC_A + 3)) * x * x + 1
    if x < 2:
        return ((CUBIC_A * x - 5 * CUBIC_A) * x + 8 * CUBIC_A) * x - 4 * CUBIC_A
    return 0.0


def phase_filters() -> Tensor:
    """[phase, shift, 5] float64: the weights of inputs j-2..j+2 in high-resolution sample
    ``2j + phase + shift`` of a bicubic x2 (PyTorch's: half-pixel centres, A = -0.75)."""
    filters = torch.zeros(PHASES, len(SHIFTS), WINDOW, dtype=torch.float64)
    for phase in range(PHASES):
        for index, shift in enumerate(SHIFTS):
            sample = phase + shift  # high-resolution offset from 2j
            source = sample // 2  # low-resolution j' of that sample, relative to j
            if sample % 2 == 0:  # even sample 2j' reads j'-2..j'+1
                first, distances = source - 2, EVEN_DISTANCES
            else:  # odd sample 2j'+1 reads j'-1..j'+2
                first, distances = source - 1, ODD_DISTANCES
            for offset, distance in enumerate(distances):
                filters[phase, index, first + offset + HALF_WINDOW] = cubic_weight(distance)
    return filters


def _beyond_only(filters: Tensor, side: str) -> Tensor:
    """The part of ``filters`` that reads the high-resolution sample just beyond the crop."""
    kept = torch.zeros_like(filters)
    if side == "first":
        kept[0, 0] = filters[0, 0]  # sample 2*0 + 0 - 1 = -1
    else:
        kept[1, 2] = filters[1, 2]  # sample 2*(n-1) + 1 + 1 = 2n
    return kept


def _row_kernel(filters: Tensor, channels: int) -> Tensor:
    """Grouped conv weight [channels*6, 3, 1, 5], a group per (channel, ky): input kx, output phase_x."""
    kernel = torch.zeros(channels * 3, PHASES, 3, WINDOW, dtype=torch.float64)
    for kx in range(3):
        for phase in range(PHASES):
            kernel[:, phase, kx] = filters[phase, kx]
    return kernel.reshape(channels * 3 * PHASES, 3, 1, WINDOW)


def _column_kernel(filters: Tensor, channels: int) -> Tensor:
    """Grouped conv weight [channels*4, 6, 5, 1], a group per channel: input (ky, phase_x),
    output (phase_y, phase_x), the order a pixel shuffle interleaves."""
    kernel = torch.zeros(channels, PHASES, PHASES, 3 * PHASES, WINDOW, dtype=torch.float64)
    for phase_y in range(PHASES):
        for phase_x in range(PHASES):
            for ky in range(3):
                kernel[:, phase_y, phase_x, ky * PHASES + phase_x] = filters[phase_y, ky]
    return kernel.reshape(channels * PHASES * PHASES, 3 * PHASES, WINDOW, 1)


class EdgeTerms(nn.Module):
    """Per image: every stage's ``conv3x3(e) + b`` over its whole edge map (``edge_conv_*``),
    stored as the four phases of its 2x2 pixel blocks (pixel-unshuffled: [4 out, H/2, W/2]), the
    layout the stage adds it in before interleaving its own phases."""

    def __init__(self, head: DynamicLocalUpsampling) -> None:
        super().__init__()
        self.convs = nn.ModuleList(stage.conv for stage in head.upsamplers)

    def forward(self, edge_maps: list[Tensor]) -> list[Tensor]:
        return [F.pixel_unshuffle(conv(edge_map), 2) for conv, edge_map in zip(self.convs, edge_maps)]


def _edge_ring(weight: Tensor, edge_map: Tensor, box: Box, inside: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """What the image pixels just outside ``box`` gave the per-image edge term on the crop's
    ring (the crop itself pads with zeros): rows above and below [1, out, 1, W] (corners
    included), columns left and right [1, out, H, 1]. ``inside`` float [4]: 1 where the crop's
    left, top, right, bottom side lies inside the image, else 0."""
    height, width = edge_map.shape[-2:]
    first_col = torch.sym_max(box.left - 1, 0)
    last_col = torch.sym_min(box.right + 1, width)
    beyond = (first_col - (box.left - 1), box.right + 1 - last_col)  # zero columns outside the image
    above = edge_map.narrow(-2, torch.sym_max(box.top - 1, 0), 1).narrow(-1, first_col, last_col - first_col)
    below = edge_map.narrow(-2, torch.sym_min(box.bottom, height - 1), 1).narrow(-1, first_col, last_col - first_col)
    above = F.conv2d(F.pad(above, beyond), weight[:, :, :1, :]) * inside[1]
    below = F.conv2d(F.pad(below, beyond), weight[:, :, 2:, :]) * inside[3]
    # both columns in one gather, then the crop's rows (a row band first would copy every column)
    right_col = torch.sym_min(box.right, width - 1)
    columns = torch.arange(2) * (right_col - first_col) + first_col
    sides = edge_map.index_select(-1, columns).narrow(-2, box.top, box.bottom - box.top)
    left, right = sides.narrow(-1, 0, 1), sides.narrow(-1, 1, 1)
    left = F.conv2d(left, weight[:, :, :, :1], padding=(1, 0)) * inside[0]
    right = F.conv2d(right, weight[:, :, :, 2:], padding=(1, 0)) * inside[2]
    return above, below, left, right


def _add_on_ring(x: Tensor, rows: Tensor, columns: Tensor) -> Tensor:
    """``x`` [1, C, H, W] plus ``rows`` [1, C, 2, W] on its first and last rows and ``columns``
    [1, C, H, 2] on its first and last columns (two scatter-adds: no full-size correction tensor
    is built). H and W are at least 2 (a stage's output)."""
    channels, height, width = x.shape[1:]
    batch = torch.zeros(1, dtype=torch.long)
    channel = torch.arange(channels)
    ends_of_height = torch.arange(2) * (height - 1)
    ends_of_width = torch.arange(2) * (width - 1)
    x = x.index_put((batch, channel[:, None], ends_of_height[None, :]), rows[0], accumulate=True)
    every_row = torch.arange(height)
    return x.index_put((batch, channel[:, None, None], every_row[None, :, None], ends_of_width[None, None, :]), columns[0], accumulate=True)


class FactoredStage(nn.Module):
    """One DLU stage as the decoder graph computes it; same result as ``Upsample2x`` on the crop."""

    def __init__(self, stage: Upsample2x) -> None:
        super().__init__()
        if stage.norm.num_groups != 1:
            raise ValueError("the DLU normalises with GroupNorm(1, C)")
        self.eps = stage.norm.eps
        self.silu = stage.silu
        weight = stage.conv.weight.detach()  # [out, in, 3, 3]
        self.channels = weight.shape[0]
        self.register_buffer("edge_weight", weight.clone())
        # the GroupNorm's affine folded into the mixing: W (gamma * x + beta) = (W gamma) x + W beta
        mix = weight.double().permute(0, 2, 3, 1).reshape(self.channels * 9, -1)
        self.register_buffer("mix_bias", (mix @ stage.norm.bias.detach().double()).float())
        filters = phase_filters()
        kernels = {
            "mix": (mix * stage.norm.weight.detach().double()).view(self.channels * 9, -1, 1, 1),
            "rows": _row_kernel(filters, self.channels),
            "rows_first": _row_kernel(_beyond_only(filters, "first"), self.channels),
            "rows_last": _row_kernel(_beyond_only(filters, "last"), self.channels),
            "columns": _column_kernel(filters, self.channels),
            "columns_first": _column_kernel(_beyond_only(filters, "first"), self.channels),
            "columns_last": _column_kernel(_beyond_only(filters, "last"), self.channels),
        }
        for name, kernel in kernels.items():
            self.register_buffer(name, kernel.float().contiguous())

    def _rows(self, x: Tensor, kernel: Tensor) -> Tensor:
        return F.conv2d(x, kernel, groups=3 * self.channels)

    def _columns(self, x: Tensor, kernel: Tensor) -> Tensor:
        return F.conv2d(x, kernel, groups=self.channels)

    def _columns_within_crop(self, x: Tensor) -> Tensor:
        """Column filter of a thin [.., h+4, 1] strip, its reads beyond the crop removed."""
        height = x.shape[-2] - 2 * HALF_WINDOW
        head = self._columns(x.narrow(-2, 0, WINDOW), self.columns_first)
        tail = self._columns(x.narrow(-2, height - 1, WINDOW), self.columns_last)
        return self._columns(x, self.columns) - F.pad(head, (0, 0, 0, height - 1)) - F.pad(tail, (0, 0, height - 1, 0))

    def forward(self, x: Tensor, edge_map: Tensor, term: Tensor, box: Box, inside: Tensor) -> Tensor:
        """``x`` the crop [1, in, h, w] of ``box``; ``edge_map`` and ``term`` (pixel-unshuffled,
        see :class:`EdgeTerms`) whole; ``inside`` as in :func:`_edge_ring`."""
        height, width = x.shape[-2:]
        torch._check(height + 2 * HALF_WINDOW >= 1)  # the replicate pad's own size check, stated
        torch._check(width + 2 * HALF_WINDOW >= 1)  # for crops sized at run time
        # replicate padding commutes with the 1x1 mixing: pad the narrower of the two
        padded = F.pad(standardise(x, self.eps), (HALF_WINDOW,) * 4, mode="replicate")
        mixed = F.conv2d(padded, self.mix, self.mix_bias)
        by_rows = self._rows(mixed, self.rows)
        phases = self._columns(by_rows, self.columns)
        # the reads one high-resolution pixel beyond the crop, as ring strips: rows (phase_y 0 of
        # the first low-resolution row, 1 of the last), then columns (with their own row ends)
        top = F.pixel_shuffle(self._columns(by_rows.narrow(-2, 0, WINDOW), self.columns_first), 2).narrow(-2, 0, 1)
        bottom = F.pixel_shuffle(self._columns(by_rows.narrow(-2, height - 1, WINDOW), self.columns_last), 2).narrow(-2, 1, 1)
        left = self._columns_within_crop(self._rows(mixed.narrow(-1, 0, WINDOW), self.rows_first))
        right = self._columns_within_crop(self._rows(mixed.narrow(-1, width - 1, WINDOW), self.rows_last))
        left = F.pixel_shuffle(left, 2).narrow(-1, 0, 1)
        right = F.pixel_shuffle(right, 2).narrow(-1, 1, 1)
        above, below, edge_left, edge_right = _edge_ring(self.edge_weight, edge_map, box.scaled(2), inside)
        x = F.pixel_shuffle(phases + crop(term, box), 2)
        rows = torch.cat([top + above, bottom + below], dim=-2)
        columns = torch.cat([left + edge_left, right + edge_right], dim=-1)
        x = _add_on_ring(x, -rows, -columns)
        return F.silu(x) if self.silu else x


class FactoredDLU(nn.Module):
    """The DLU head for the decoder graph: the model's locator and box, factored stages."""

    def __init__(self, head: DynamicLocalUpsampling) -> None:
        super().__init__()
        self.head = head
        self.stages = nn.ModuleList(FactoredStage(stage) for stage in head.upsamplers)

    def forward(self, features: Tensor, edge_maps: list[Tensor], edge_terms: list[Tensor]) -> tuple[Tensor, Tensor]:
        """features [1,C,h,w] -> (logits [1,1,16h,16w] with -100 outside the box, box int64 [4])."""
        grid_h, grid_w = features.shape[-2:]
        _, values, box = self.head.locate(features)
        inside = torch.stack([values[0] > 0, values[1] > 0, values[2] < grid_w, values[3] < grid_h]).float()
        x = crop(features, box)
        for level, (stage, edge_map, term) in enumerate(zip(self.stages, edge_maps, edge_terms)):
            x = stage(x, edge_map, term, box.scaled(2**level), inside)
        scale = self.head.scale
        return paste(x, box.scaled(scale), grid_h * scale, grid_w * scale, OUTSIDE_LOGIT), values
