"""The two attention paths of Dynamic Hybrid Attention (DHA).

Routed (boundary) tokens take full softmax attention over every token with 2-D RoPE; all other
tokens take BSQ attention, whose keys are binarised to ``2**code_size`` codes so that attention
costs O(N * codes) instead of O(N^2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from i2f_deploy.model.rope import apply_rope


def rope_tables(height: int, width: int, dim: int, ratio: float, theta: float) -> tuple[Tensor, Tensor]:
    """cos/sin tables [H*W, dim] of a 2-D rotary embedding with interleaved pairs.

    The first half of the rotated pairs encodes the row, the second half the column; positions
    are scaled by ``ratio``.
    """
    half = dim // 2
    freqs = theta ** (-torch.arange(0, half, 2)[: half // 2].float() / half)
    rows = torch.arange(height).float() * ratio
    cols = torch.arange(width).float() * ratio
    grid_rows, grid_cols = torch.meshgrid(rows, cols, indexing="ij")
    angles = torch.cat([grid_rows[..., None] * freqs, grid_cols[..., None] * freqs], dim=-1)
    angles = angles.repeat_interleave(2, dim=-1).reshape(height * width, dim)
    return angles.cos(), angles.sin()


class FullAttention(nn.Module):
    """Single-head softmax attention of selected queries over all keys, with 2-D RoPE.

    Holds only the RoPE tables of the fixed token grid: a function of the target size.
    """

    # buffers, registered in __init__
    rope_cos: Tensor
    rope_sin: Tensor

    def __init__(self, head_dim: int, grid: int, ratio: float, theta: float) -> None:
        super().__init__()
        self.scale = head_dim**-0.5
        cos, sin = rope_tables(grid, grid, head_dim, ratio, theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, query_tokens: Tensor) -> Tensor:
        """q [M,D] of tokens ``query_tokens`` (flat indices), k/v [N,D] of all tokens -> [M,D]."""
        q = apply_rope(q, self.rope_cos[query_tokens], self.rope_sin[query_tokens])
        k = apply_rope(k, self.rope_cos, self.rope_sin)
        attn = ((self.scale * q) @ k.transpose(-2, -1)).softmax(dim=-1)
        return attn @ v


def code_bits(code_size: int) -> Tensor:
    """[2**code_size, code_size] bits of every code, most significant first."""
    codes = torch.arange(2**code_size)
    weights = 2 ** torch.arange(code_size - 1, -1, -1)
    return (codes[:, None] // weights) % 2


class BSQAttention(nn.Module):
    """Binary spherical quantised attention (eval form).

    Every key is replaced by the key of its code: ``[bits, 1 - bits] @ codebook``. Values are
    summed per code and counted, so each query attends to at most 256 code keys:
    ``out = softmax(s q K_c) @ V_sum / (softmax(s q K_c) @ count)``.
    """

    # buffers, registered in __init__
    code_weights: Tensor
    code_keys: Tensor

    def __init__(self, head_dim: int, code_size: int) -> None:
        super().__init__()
        self.scale = head_dim**-0.5
        self.code_size = code_size
        self.code_proj = nn.Linear(head_dim, code_size)
        self.codebook = nn.Parameter(torch.zeros(2 * code_size, head_dim))
        self.register_buffer("code_weights", 2 ** torch.arange(code_size - 1, -1, -1), persistent=False)
        self.register_buffer("code_keys", torch.zeros(2**code_size, head_dim), persistent=False)

    @torch.no_grad()
    def refresh_constants(self) -> None:
        """Recompute the 256 code keys from the codebook (once per weights, not per click)."""
        bits = code_bits(self.code_size).float()
        self.code_keys.copy_(torch.cat([bits, 1 - bits], dim=-1) @ self.codebook)

    def key_codes(self, k: Tensor) -> Tensor:
        """Code index [N] of every key: the sign pattern of its normalised projection."""
        projected = F.normalize(self.code_proj(k), p=2, dim=-1)
        return ((projected >= 0).long() * self.code_weights).sum(-1)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """q [M,D] of the non-routed tokens, k/v [N,D] of all tokens -> [M,D]."""
        codes = self.key_codes(k)
        num_codes = self.code_keys.shape[0]
        value_sums = v.new_zeros(num_codes, v.shape[-1]).index_add_(0, codes, v)
        counts = v.new_zeros(num_codes).index_add_(0, codes, torch.ones_like(codes, dtype=v.dtype))
        used = counts > 0
        attn = ((self.scale * q) @ self.code_keys[used].transpose(-2, -1)).softmax(dim=-1)
        return (attn @ value_sums[used]) / (attn @ counts[used, None])
