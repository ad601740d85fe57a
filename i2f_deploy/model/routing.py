"""Where the decoder spends compute: the DPE box and the DHA token routing.

Both are discrete functions of the prompt map (``ref_label``, values 0..4), computed once per
click and shared by every neck block.

Routing rule (official): inside the DPE box a pixel is uncertain when the 7x7 box-filter
variance of the label is positive; every "unknown" pixel is uncertain too; a token is routed
when any pixel of its cell is uncertain. The official variance, ``conv(x^2) - conv(x)^2`` in
float32, leaves a positive rounding residual on constant windows of value 1..4 (measured:
3e-7..6e-6 with PyTorch on CPU) and exactly 0 on constant windows of 0. The decision it
implements is therefore "some pixel of the clipped 7x7 window is non-zero". We compute that
decision exactly, with a max-pool, so that every backend takes the same one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

POSSIBLY_BACKGROUND = 1
UNKNOWN = 2


@dataclass(frozen=True)
class Box:
    """Half-open pixel (or token) box: columns left..right-1, rows top..bottom-1."""

    left: int
    top: int
    right: int
    bottom: int

    def as_tensor(self) -> Tensor:
        return torch.tensor([self.left, self.top, self.right, self.bottom])

    def scaled(self, factor: int) -> "Box":
        return Box(self.left * factor, self.top * factor, self.right * factor, self.bottom * factor)

    def shrunk(self, factor: int) -> "Box":
        return Box(self.left // factor, self.top // factor, self.right // factor, self.bottom // factor)


def bounding_box(mask: Tensor, divisor: int = 1) -> Box:
    """Box of the True pixels of a 2-D mask, snapped outward to multiples of ``divisor``.

    An empty mask gives the whole extent.
    """
    height, width = mask.shape[-2:]
    rows = torch.nonzero(mask.reshape(height, width).any(dim=1)).flatten()
    cols = torch.nonzero(mask.reshape(height, width).any(dim=0)).flatten()
    if rows.numel() == 0:
        left, top, right, bottom = 0, 0, width, height
    else:
        left, top, right, bottom = int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
    return Box(
        left // divisor * divisor,
        top // divisor * divisor,
        -(-right // divisor) * divisor,
        -(-bottom // divisor) * divisor,
    )


def dpe_box(ref_label: Tensor, stride: int) -> tuple[Box, Box]:
    """(box of pixels != "possibly background" snapped to ``stride``, that box grown by one stride).

    The first is the official ``dpe_bbox`` diagnostic; the second is where DPE and routing work.
    """
    height, width = ref_label.shape[-2:]
    core = bounding_box(ref_label != POSSIBLY_BACKGROUND, stride)
    grown = Box(
        max(core.left - stride, 0),
        max(core.top - stride, 0),
        min(core.right + stride, width),
        min(core.bottom + stride, height),
    )
    return core, grown


def routed_token_mask(ref_label: Tensor, box: Box, kernel_size: int, stride: int) -> Tensor:
    """Bool [H/stride, W/stride]: tokens routed to full attention (see module docstring)."""
    label = ref_label.reshape(1, 1, *ref_label.shape[-2:])
    crop = label[..., box.top : box.bottom, box.left : box.right].float()
    nonzero_near = F.max_pool2d(crop, kernel_size, stride=1, padding=kernel_size // 2) > 0
    uncertain = label == UNKNOWN
    uncertain[..., box.top : box.bottom, box.left : box.right] |= nonzero_near
    return F.max_pool2d(uncertain.float(), stride).reshape(label.shape[-2] // stride, -1) > 0
