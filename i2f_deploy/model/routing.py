"""Where the decoder spends compute: the DPE box and the DHA token routing.

Both are discrete functions of the prompt map (``ref_label``, values 0..4), computed once per
click and shared by every neck block.

Routing rule (official): inside the DPE box a pixel is uncertain when the 7x7 box-filter
variance of the label is positive; every "unknown" pixel is uncertain too; a token is routed
when any pixel of its cell is uncertain. The official variance, ``conv(x^2) - conv(x)^2`` in
float32, leaves a positive rounding residual on constant windows of value 1..4 (measured:
3e-7..6e-6 with PyTorch on CPU) and exactly 0 on constant windows of 0. The decision it
implements is therefore "some pixel of the clipped 7x7 window is non-zero". We compute that
decision exactly, on integer block maxima per token, so that every backend takes the same one.

Boxes are read out of tensors with ``.item()`` and crops use ``narrow``/``pad``, so the same code
runs eagerly and traces with data-dependent sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from i2f_deploy.prompt_map import POSSIBLY_BACKGROUND, UNKNOWN


@dataclass(frozen=True)
class Box:
    """Half-open box: columns left..right-1, rows top..bottom-1 (ints, or SymInts when traced)."""

    left: int
    top: int
    right: int
    bottom: int

    def as_tensor(self) -> Tensor:
        return torch.tensor([self.left, self.top, self.right, self.bottom])

    def scaled(self, factor: int) -> Box:
        return Box(self.left * factor, self.top * factor, self.right * factor, self.bottom * factor)

    def shrunk(self, factor: int) -> Box:
        return Box(self.left // factor, self.top // factor, self.right // factor, self.bottom // factor)

    def inside_flags(self, height: int, width: int) -> Tensor:
        """float32 [4]: 1 where the left, top, right, bottom side lies inside a ``height`` x
        ``width`` image (image pixels lie just beyond it), 0 where it is the image's own border."""
        return torch.tensor([self.left > 0, self.top > 0, self.right < width, self.bottom < height], dtype=torch.float32)


def box_from_tensor(values: Tensor, height: int, width: int) -> Box:
    """Box from an int64 ``[left, top, right, bottom]`` tensor, with the bounds a tracer needs."""
    # an integer tensor's items are ints (SymInts under export), never floats
    left, top, right, bottom = (cast(int, int_value.item()) for int_value in values.unbind())
    torch._check(left >= 0)
    torch._check(left < right)
    torch._check(right <= width)
    torch._check(top >= 0)
    torch._check(top < bottom)
    torch._check(bottom <= height)
    return Box(left, top, right, bottom)


def bounding_box_tensor(mask: Tensor, divisor: int = 1) -> Tensor:
    """int64 ``[left, top, right, bottom]`` of the True pixels of a 2-D mask, snapped outward to
    multiples of ``divisor``; an empty mask gives the whole extent."""
    height, width = mask.shape[-2:]
    rows, cols = mask.any(dim=-1), mask.any(dim=-2)
    row_ids, col_ids = torch.arange(height), torch.arange(width)
    top = torch.where(rows, row_ids, height).min()
    bottom = torch.where(rows, row_ids + 1, 0).max()
    left = torch.where(cols, col_ids, width).min()
    right = torch.where(cols, col_ids + 1, 0).max()
    empty = bottom == 0
    return torch.stack([
        torch.where(empty, 0, left // divisor * divisor),
        torch.where(empty, 0, top // divisor * divisor),
        torch.where(empty, width, (right + divisor - 1) // divisor * divisor),
        torch.where(empty, height, (bottom + divisor - 1) // divisor * divisor),
    ])


def crop(x: Tensor, box: Box) -> Tensor:
    """``x[..., top:bottom, left:right]`` (written with narrow: no clamping, traceable)."""
    return x.narrow(-2, box.top, box.bottom - box.top).narrow(-1, box.left, box.right - box.left)


def paste(x: Tensor, box: Box, height: int, width: int, fill: float = 0.0) -> Tensor:
    """Place a crop of size ``box`` on a ``height x width`` canvas filled with ``fill``."""
    return F.pad(x, (box.left, width - box.right, box.top, height - box.bottom), value=fill)


def grown_dpe_box(core: Tensor, stride: int, height: int, width: int) -> Tensor:
    """The DPE box grown by one stride on each side and clamped to the image."""
    margin = torch.tensor([-stride, -stride, stride, stride])
    limits = torch.tensor([width, height, width, height])
    return torch.minimum((core + margin).clamp(min=0), limits)


def _dilated_cells(near: Tensor, inside: Tensor, stride: int, reach: int) -> Tensor:
    """uint8 [..., X, cells], non-zero where some of ``near`` [..., X, cells * stride] is non-zero
    within ``reach`` pixels of the cell along the last axis, counting only cells in ``inside``.

    A cell's window is the cell itself plus the last ``reach`` pixels of the cell before it and
    the first ``reach`` of the cell after it; so three block maxima replace a max-pool.
    """
    blocks = near.unflatten(-1, (-1, stride))
    keep = inside.to(near.dtype)
    own = blocks.amax(dim=-1) * keep
    tail = blocks[..., stride - reach :].amax(dim=-1) * keep  # seen by the next cell
    head = blocks[..., :reach].amax(dim=-1) * keep  # seen by the previous cell
    from_previous = F.pad(tail[..., :-1], (1, 0))
    from_next = F.pad(head[..., 1:], (0, 1))
    return torch.maximum(own, torch.maximum(from_previous, from_next))


def routed_token_mask(ref_label: Tensor, box: Tensor, kernel_size: int, stride: int) -> Tensor:
    """Bool [H/stride, W/stride]: tokens routed to full attention (see module docstring).

    ``box`` is the int64 DPE box in pixels; it is aligned to ``stride``, so a cell lies wholly
    inside or wholly outside it. A cell inside the box is uncertain when a non-zero label sits in
    the box within ``kernel_size // 2`` pixels of the cell (the union of its pixels' clipped
    windows); any cell holding an "unknown" pixel is routed too. Computed on uint8 block maxima,
    this takes the same decisions as the per-pixel max-pool without full-resolution float work.
    """
    reach = kernel_size // 2
    if reach > stride:
        raise ValueError("the uncertainty window must not reach beyond the neighbouring token")
    height, width = ref_label.shape[-2:]
    label = ref_label.reshape(height, width)
    cell_rows = torch.arange(height // stride) * stride
    cell_cols = torch.arange(width // stride) * stride
    rows_inside = (cell_rows >= box[1]) & (cell_rows < box[3])
    cols_inside = (cell_cols >= box[0]) & (cell_cols < box[2])
    near_by_row = _dilated_cells(label, cols_inside, stride, reach)  # [H, W/stride]
    near = _dilated_cells(near_by_row.transpose(0, 1), rows_inside, stride, reach).transpose(0, 1)
    inside = rows_inside[:, None] & cols_inside[None, :]
    unknown = (label == UNKNOWN).to(torch.uint8).reshape(height // stride, stride, width // stride, stride)
    return ((near > 0) & inside) | (unknown.amax(dim=(1, 3)) > 0)


@dataclass
class Routing:
    """One click's routing: token sets of the two attention paths and the DPE boxes."""

    routed: Tensor  # flat indices of full-attention tokens, ascending
    others: Tensor  # flat indices of BSQ-attention tokens, ascending
    box_values: Tensor  # int64 [4] pixels: where DPE and routing work (official box + one stride)
    box: Box  # the same, as ints
    core_box: Tensor | None  # pixels: the official ``dpe_bbox`` diagnostic, before the margin


class TokenRouter(nn.Module):
    """Prompt map -> :class:`Routing` (no parameters)."""

    def __init__(self, stride: int, kernel_size: int, dense: bool = False) -> None:
        super().__init__()
        self.stride = stride
        self.kernel_size = kernel_size
        self.dense = dense

    def forward(self, ref_label: Tensor) -> Routing:
        height, width = ref_label.shape[-2:]
        label = ref_label.reshape(height, width)
        if self.dense:
            whole = torch.tensor([0, 0, width, height])
            everything = torch.arange((height // self.stride) * (width // self.stride))
            return Routing(everything, everything[:0], whole, box_from_tensor(whole, height, width), whole)
        core = bounding_box_tensor(label != POSSIBLY_BACKGROUND, self.stride)
        values = grown_dpe_box(core, self.stride, height, width)
        box = box_from_tensor(values, height, width)
        mask = routed_token_mask(ref_label, values, self.kernel_size, self.stride).flatten()
        return Routing(torch.nonzero(mask).flatten(), torch.nonzero(~mask).flatten(), values, box, core)
