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
the first row or column and ``phase 1, shift +1`` at the last: :func:`~i2f_deploy.custom_ops.dlu_upsample.beyond_only`,
:meth:`FactoredStage._beyond_ring`), and the per-image edge term saw image pixels there
(:func:`_edge_ring`). Everything after the mixing is one ``DLUUpsample`` node in the decoder
graph (:mod:`i2f_deploy.custom_ops.dlu_upsample`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from i2f_deploy.custom_ops import dlu_upsample
from i2f_deploy.custom_ops.dlu_upsample import (
    HALF_WINDOW,
    PHASES,
    WINDOW,
    Side,
    beyond_only,
    column_kernel,
    phase_filters,
    row_kernel,
)  # fmt: skip
from i2f_deploy.export.stable_norm import standardise
from i2f_deploy.model.head import OUTSIDE_LOGIT, DynamicLocalUpsampling, Upsample2x
from i2f_deploy.model.routing import Box, box_from_tensor, crop, paste

# A stage mixes its input by a convolution from this many input channels on, by a matrix product
# below. Measured on OpenVINO, base 1024, medium click, the mixing with its reorders: stage one
# (256 channels) convolution 12.1 ms against product and bias 14.8 ms; stages two to four (64, 16,
# 4 channels) 14.8 ms against 9.5 ms (per-node counters, both graphs in turns, load 4.4).
_CONVOLUTION_FROM_CHANNELS = 256


def _per_channel(kernel: np.ndarray, channels: int) -> Tensor:
    """One channel's grouped-convolution kernel repeated for ``channels`` groups, float32."""
    return torch.from_numpy(np.tile(kernel, (channels, 1, 1, 1))).float().contiguous()


class EdgeTerms(nn.Module):
    """Per image: every stage's ``conv3x3(e) + b`` over its whole edge map (``edge_conv_*``),
    stored as the four phases of its 2x2 pixel blocks (pixel-unshuffled: [4 out, H/2, W/2]), the
    layout the stage adds it in before interleaving its own phases."""

    def __init__(self, head: DynamicLocalUpsampling) -> None:
        super().__init__()
        self.convs = nn.ModuleList(stage.conv for stage in cast("Iterable[Upsample2x]", head.upsamplers))

    def forward(self, edge_maps: list[Tensor]) -> list[Tensor]:
        return [F.pixel_unshuffle(conv(edge_map), 2) for conv, edge_map in zip(self.convs, edge_maps)]


def _window(x: Tensor, axis: int, side: Side) -> Tensor:
    """The ``WINDOW`` low-resolution positions (``x`` replicate-padded by ``HALF_WINDOW``) that
    the crop's first or last position along ``axis`` reads."""
    start = 0 if side == "first" else x.shape[axis] - WINDOW
    return x.narrow(axis, start, WINDOW)


def _outer_line(upsampled: Tensor, axis: int, side: Side) -> Tensor:
    """Of the two high-resolution lines one low-resolution line shuffles into along ``axis``,
    the one on the crop's ``side``: phase 0 at the first, phase 1 at the last."""
    return upsampled.narrow(axis, 0 if side == "first" else PHASES - 1, 1)


def _edge_ring(weight: Tensor, edge_map: Tensor, box: Box) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """What the image pixels just outside ``box`` gave the per-image edge term on the crop's
    ring (the crop itself pads with zeros): rows above and below [1, out, 1, W] (corners
    included), columns left and right [1, out, H, 1]; nothing on a side that is the image's
    own border."""
    height, width = edge_map.shape[-2:]
    inside = box.inside_flags(height, width)
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

    # buffers, registered in __init__
    edge_weight: Tensor
    mix_bias: Tensor
    mix: Tensor
    rows: Tensor
    rows_first: Tensor
    rows_last: Tensor
    columns: Tensor
    columns_first: Tensor
    columns_last: Tensor

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
            "mix": (mix * stage.norm.weight.detach().double()).view(self.channels * 9, -1, 1, 1).float().contiguous(),
            "rows": _per_channel(row_kernel(filters), self.channels),
            "rows_first": _per_channel(row_kernel(beyond_only(filters, "first")), self.channels),
            "rows_last": _per_channel(row_kernel(beyond_only(filters, "last")), self.channels),
            "columns": _per_channel(column_kernel(filters), self.channels),
            "columns_first": _per_channel(column_kernel(beyond_only(filters, "first")), self.channels),
            "columns_last": _per_channel(column_kernel(beyond_only(filters, "last")), self.channels),
        }
        for name, kernel in kernels.items():
            self.register_buffer(name, kernel)

    def _mix(self, x: Tensor) -> Tensor:
        """The 1x1 mixing: a convolution for a wide input, else one matrix product over the plain
        [in, pixels] layout. OpenVINO runs the convolution on a blocked layout with a reorder on
        each side (DLUUpsample takes a plain one); for the narrow stages the reorders cost more
        than the product (see ``_CONVOLUTION_FROM_CHANNELS``)."""
        if x.shape[1] >= _CONVOLUTION_FROM_CHANNELS:
            return F.conv2d(x, self.mix, self.mix_bias)
        height, width = x.shape[-2:]
        mixed = torch.matmul(self.mix.flatten(1), x.flatten(2)) + self.mix_bias[:, None]  # [1, 9C, pixels]
        return mixed.reshape(1, -1, height, width)

    def _filter(self, x: Tensor, kernel: Tensor) -> Tensor:
        """A row or column filter: a convolution grouped by output channel."""
        return F.conv2d(x, kernel, groups=self.channels)

    def _columns_within_crop(self, x: Tensor) -> Tensor:
        """Column filter of a thin [.., h+4, 1] strip, its reads beyond the crop removed."""
        height = x.shape[-2] - 2 * HALF_WINDOW
        head = self._filter(_window(x, -2, "first"), self.columns_first)
        tail = self._filter(_window(x, -2, "last"), self.columns_last)
        return self._filter(x, self.columns) - F.pad(head, (0, 0, 0, height - 1)) - F.pad(tail, (0, 0, height - 1, 0))

    def _beyond_ring(self, mixed: Tensor, by_rows: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """What the factored filters read one high-resolution pixel beyond the crop, where the
        direct stage's convolution reads zeros, on the output's ring: rows above and below
        [1, C, 1, 2w], columns left and right [1, C, 2h, 1] (each column strip with its own
        reads beyond the first and last rows removed). ``by_rows``: ``mixed`` row-filtered."""

        def row(side: Side, kernel: Tensor) -> Tensor:
            return _outer_line(F.pixel_shuffle(self._filter(_window(by_rows, -2, side), kernel), 2), -2, side)

        def column(side: Side, kernel: Tensor) -> Tensor:
            strip = self._columns_within_crop(self._filter(_window(mixed, -1, side), kernel))
            return _outer_line(F.pixel_shuffle(strip, 2), -1, side)

        return (row("first", self.columns_first), row("last", self.columns_last),
                column("first", self.rows_first), column("last", self.rows_last))

    def forward(self, x: Tensor, edge_map: Tensor, term: Tensor, box: Tensor) -> Tensor:
        """``x`` the crop [1, in, h, w] of ``box`` (int64 [4] on the stage's input grid);
        ``edge_map`` and ``term`` (pixel-unshuffled, see :class:`EdgeTerms`) whole."""
        height, width = x.shape[-2:]
        torch._check(height + 2 * HALF_WINDOW >= 1)  # the replicate pad's own size check, stated
        torch._check(width + 2 * HALF_WINDOW >= 1)  # for crops sized at run time
        # replicate padding commutes with the 1x1 mixing: pad the narrower of the two
        padded = F.pad(standardise(x, self.eps), (HALF_WINDOW,) * 4, mode="replicate")
        mixed = self._mix(padded)
        x = dlu_upsample.torch_op(mixed, edge_map, term, box, self)
        return F.silu(x) if self.silu else x

    def upsample_mixed(self, mixed: Tensor, edge_map: Tensor, term: Tensor, values: Tensor) -> Tensor:
        """``DLUUpsample`` computed eagerly (see :mod:`i2f_deploy.custom_ops.dlu_upsample`)."""
        grid_h, grid_w = term.shape[-2:]
        box = box_from_tensor(values, grid_h, grid_w)
        by_rows = self._filter(mixed, self.rows)
        phases = self._filter(by_rows, self.columns)
        top, bottom, left, right = self._beyond_ring(mixed, by_rows)
        above, below, edge_left, edge_right = _edge_ring(self.edge_weight, edge_map, box.scaled(2))
        x = F.pixel_shuffle(phases + crop(term, box), 2)
        rows = torch.cat([top + above, bottom + below], dim=-2)
        columns = torch.cat([left + edge_left, right + edge_right], dim=-1)
        return _add_on_ring(x, -rows, -columns)


class FactoredDLU(nn.Module):
    """The DLU head for the decoder graph: the model's locator and box, factored stages."""

    def __init__(self, head: DynamicLocalUpsampling) -> None:
        super().__init__()
        self.head = head
        self.stages = nn.ModuleList(FactoredStage(stage) for stage in cast("Iterable[Upsample2x]", head.upsamplers))

    def forward(self, features: Tensor, edge_maps: list[Tensor], edge_terms: list[Tensor]) -> tuple[Tensor, Tensor]:
        """features [1,C,h,w] -> (logits [1,1,16h,16w] with -100 outside the box, box int64 [4])."""
        grid_h, grid_w = features.shape[-2:]
        _, values, box = self.head.locate(features)
        x = crop(features, box)
        for level, (stage, edge_map, term) in enumerate(zip(self.stages, edge_maps, edge_terms)):
            x = stage(x, edge_map, term, values * 2**level)
        scale = self.head.scale
        return paste(x, box.scaled(scale), grid_h * scale, grid_w * scale, OUTSIDE_LOGIT), values
