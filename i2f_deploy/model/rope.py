"""Rotary position embedding on interleaved channel pairs, as both official modules use it."""

from __future__ import annotations

import torch
from torch import Tensor


def rotate_pairs(x: Tensor) -> Tensor:
    """Official pair rotation ``(a, b) -> (b, -a)`` on interleaved channel pairs."""
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((odd, -even), dim=-1).flatten(-2)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    return x * cos + rotate_pairs(x) * sin
