"""HRSAM ViT image backbone (official ``HRSAMViTNoSSM``), eval-only and export-friendly.

The image is embedded at two scales (the target size ``S`` and a 256x256 resize); the tokens of
both scales are processed jointly by a plain ViT whose attention is restricted to 16x16 windows,
every odd block using windows shifted by half a window. Selected blocks are fused across scales
and projected to the 256-channel image embedding.

Everything that depends only on the target size and the loaded weights (window gather/scatter
indices, rotary tables, resized position embeddings) is precomputed by
:meth:`HRSAMBackbone.refresh_constants`, so :meth:`HRSAMBackbone.forward` is a static graph of
gathers, reshapes, matmuls and normalisations that traces and exports to ONNX without any
data-dependent control flow.

Parameter names mirror the official checkpoint (without its ``backbone.`` prefix) so weights
load strictly; the precomputed constants are non-persistent and never enter ``state_dict``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from i2f_deploy.config import BackboneConfig
from i2f_deploy.model.rope import apply_rope

__all__ = ["HRSAMBackbone"]

_ROPE_THETA = 10000.0


@dataclass(frozen=True)
class _Scale:
    """One input scale: its square token grid and where its tokens start in the joint sequence."""

    image_size: int
    grid: int
    offset: int

    @property
    def num_tokens(self) -> int:
        return self.grid * self.grid


@dataclass(frozen=True)
class _ScaleWindows:
    """How one scale's grid is cut into windows: leading pad (the shift) and padded grid side."""

    lead: int
    padded: int


def _scale_windows(grid: int, window: int, shift: int) -> _ScaleWindows:
    """Windowing of a grid; grids no larger than one window are never shifted (official rule)."""
    effective_shift = shift if grid > window else 0
    lead = (window - effective_shift) % window
    padded = math.ceil((lead + grid) / window) * window
    return _ScaleWindows(lead=lead, padded=padded)


def _interleaved_angles(length: int, freqs: Tensor, ratio: float) -> Tensor:
    """RoPE angles of positions ``0..length-1``: ``[length, 2 * len(freqs)]``, each angle twice."""
    positions = torch.arange(length, device=freqs.device, dtype=freqs.dtype) * ratio
    return (positions[:, None] * freqs[None, :]).repeat_interleave(2, dim=-1)


class _WindowLayout(nn.Module):
    """Fixed window partition of the joint token sequence, shared by all blocks of one parity.

    ``gather`` lists, window by window and row-major inside each window, the token index of every
    window slot; slots outside a scale's grid point at index ``num_tokens``, where the attention
    appends its learned padding token. ``scatter`` gives, for every token, its slot, i.e. the
    inverse of ``gather`` on real tokens. ``rope_cos``/``rope_sin`` are the rotary tables of the
    slots, ``[num_slots, 1, head_dim]``, with positions measured on the padded grid.
    All four are non-persistent buffers: they are derived data, never checkpoint content.
    """

    gather: Tensor
    scatter: Tensor
    rope_cos: Tensor
    rope_sin: Tensor

    def __init__(self, scales: list[_Scale], window: int, shift: int) -> None:
        super().__init__()
        self.window = window
        self.shift = shift
        self.scales = scales
        self.windowing = [_scale_windows(s.grid, window, shift) for s in scales]
        self.num_windows = sum((w.padded // window) ** 2 for w in self.windowing)
        self.window_area = window * window
        num_slots = self.num_windows * self.window_area
        for name in ("gather", "scatter"):
            self.register_buffer(name, torch.zeros(0, dtype=torch.long), persistent=False)
        for name in ("rope_cos", "rope_sin"):
            self.register_buffer(name, torch.zeros(num_slots, 1, 0), persistent=False)

    def _slot_grid(self, windowing: _ScaleWindows, values: Tensor) -> Tensor:
        """Reorder a ``[padded, padded, ...]`` grid into window-major slot order ``[slots, ...]``."""
        n, w = windowing.padded // self.window, self.window
        tail = values.shape[2:]
        values = values.reshape(n, w, n, w, *tail).transpose(1, 2)
        return values.reshape(n * n * w * w, *tail)

    @torch.no_grad()
    def refresh(self, freqs: Tensor, rope_ratio: float) -> None:
        """Recompute indices and rotary tables from the (loaded) ``rope.freqs`` buffer."""
        device = freqs.device
        total = sum(s.num_tokens for s in self.scales)
        gathers, angles = [], []
        for scale, windowing in zip(self.scales, self.windowing):
            padded, lead, grid = windowing.padded, windowing.lead, scale.grid
            rows = torch.arange(padded, device=device) - lead
            valid_rows = (rows >= 0) & (rows < grid)
            valid = valid_rows[:, None] & valid_rows[None, :]
            token = scale.offset + rows[:, None] * grid + rows[None, :]
            token = torch.where(valid, token, torch.full_like(token, total))
            gathers.append(self._slot_grid(windowing, token))

            axis = _interleaved_angles(padded, freqs, rope_ratio)
            grid_angles = torch.cat(
                (axis[:, None, :].expand(padded, padded, -1), axis[None, :, :].expand(padded, padded, -1)),
                dim=-1,
            )
            angles.append(self._slot_grid(windowing, grid_angles))
        gather = torch.cat(gathers)
        slot_angles = torch.cat(angles)[:, None, :]

        # Invert the gather; every padding slot lands in the extra sink entry, which is dropped.
        slots = torch.arange(gather.numel(), device=device)
        scatter = torch.zeros(total + 1, dtype=torch.long, device=device).scatter(0, gather, slots)[:total]

        self.gather = gather
        self.scatter = scatter
        self.rope_cos = slot_angles.cos()
        self.rope_sin = slot_angles.sin()


class _PatchEmbed(nn.Module):
    """16x16 patch embedding; stored as a conv, computed as the official linear over patches."""

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, image: Tensor) -> Tensor:
        """``[B, 3, H, W]`` -> tokens ``[B, (H/p) * (W/p), D]`` in row-major grid order."""
        p = self.patch_size
        b, c, h, w = image.shape
        patches = image.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        patches = patches.reshape(b, (h // p) * (w // p), c * p * p)
        return F.linear(patches, self.proj.weight.reshape(self.proj.out_channels, -1), self.proj.bias)


class _WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with 2-D RoPE and a learned padding token."""

    def __init__(self, embed_dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.padding = nn.Parameter(torch.zeros(1, embed_dim))

    def _to_windows(self, x: Tensor, layout: _WindowLayout, rotate: bool) -> Tensor:
        """``[B, L+1, heads, d]`` -> ``[B, windows, heads, slots, d]`` (optionally RoPE-rotated)."""
        x = x[:, layout.gather]
        if rotate:
            x = apply_rope(x, layout.rope_cos, layout.rope_sin)
        b = x.shape[0]
        x = x.reshape(b, layout.num_windows, layout.window_area, self.num_heads, self.head_dim)
        return x.transpose(2, 3)

    def forward(self, x: Tensor, layout: _WindowLayout) -> Tensor:
        """``[B, L, D]`` normalised tokens -> ``[B, L, D]`` attention output."""
        b, length, dim = x.shape
        x = torch.cat((x, self.padding.expand(b, 1, dim)), dim=1)
        q, k, v = self.qkv(x).reshape(b, length + 1, 3, self.num_heads, self.head_dim).unbind(2)
        q = self._to_windows(q, layout, rotate=True)
        k = self._to_windows(k, layout, rotate=True)
        v = self._to_windows(v, layout, rotate=False)
        attn = ((self.scale * q) @ k.transpose(-2, -1)).softmax(dim=-1)
        out = (attn @ v).transpose(2, 3).reshape(b, layout.num_windows * layout.window_area, dim)
        return self.proj(out[:, layout.scatter])


class _Mlp(nn.Module):
    """Transformer feed-forward with exact GELU."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    """Pre-norm transformer block with window attention."""

    def __init__(self, embed_dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dim)
        self.attn = _WindowAttention(embed_dim, num_heads)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.mlp = _Mlp(embed_dim, int(embed_dim * mlp_ratio))

    def forward(self, x: Tensor, layout: _WindowLayout) -> Tensor:
        x = x + self.attn(self.norm1(x), layout)
        return x + self.mlp(self.norm2(x))


class _ChannelsLast(nn.Module):
    """``[B, C, H, W]`` -> ``[B, H, W, C]`` (so a LayerNorm can normalise channels)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 2, 3, 1)


class _Rope(nn.Module):
    """Holder of the checkpoint's RoPE base frequencies (``rope.freqs``, a persistent buffer).

    The official module stores them in the checkpoint, so the loaded values, not a recomputation,
    define the rotary tables.
    """

    freqs: Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        exponents = torch.arange(0, dim, 2)[: dim // 2].float() / dim
        self.register_buffer("freqs", _ROPE_THETA**-exponents)


class HRSAMBackbone(nn.Module):
    """The Inter2Former image encoder: ``[B, 3, S, S]`` normalised image -> ``[B, 256, S/16, S/16]``.

    ``image_size`` (the target size ``S``) is fixed at construction because the window layout,
    the rotary tables and the resized position embeddings all depend on it; precomputing them
    keeps the forward a static graph. After loading weights call :meth:`refresh_constants`.
    """

    def __init__(self, config: BackboneConfig, image_size: int) -> None:
        super().__init__()
        p = config.patch_size  # sizes and head widths checked by the config (i2f_deploy.config)
        sizes = [image_size, *config.downsample_sizes]
        self.config = config
        self.image_size = image_size
        dim = config.embed_dim
        self.pretrain_grid = config.img_size // p

        offset, scales = 0, []
        for size in sizes:
            scales.append(_Scale(image_size=size, grid=size // p, offset=offset))
            offset += (size // p) ** 2
        self.scales = scales

        # Parameters, named as in the official checkpoint.
        self.patch_embed = _PatchEmbed(p, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.pretrain_grid**2, dim))
        self.rope = _Rope(dim // config.num_heads // 2)
        self.blocks = nn.ModuleList(
            _Block(dim, config.num_heads, config.mlp_ratio) for _ in range(config.depth)
        )
        num_scales = len(scales)
        out_dim = config.final_embed_dim
        self.multi_scale_fusion = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(dim)) for _ in config.out_indices
        )
        self.lateral_convs = nn.ModuleList(
            nn.Sequential(nn.Linear(num_scales * dim, out_dim, bias=False), nn.LayerNorm(out_dim))
            for _ in config.out_indices
        )
        self.out_conv = nn.Sequential(
            nn.Conv2d(out_dim, out_dim, kernel_size=3, padding=1, groups=out_dim, bias=False),
            _ChannelsLast(),
            nn.LayerNorm(out_dim),
        )

        # Derived constants (non-persistent): even blocks use plain windows, odd blocks shifted.
        window = config.window_size
        self.window_layouts = nn.ModuleList(
            (_WindowLayout(scales, window, 0), _WindowLayout(scales, window, window // 2))
        )
        for index in range(len(scales)):
            self.register_buffer(f"_scale_pos_embed_{index}", torch.zeros(0), persistent=False)
        self.refresh_constants()

    @torch.no_grad()
    def refresh_constants(self) -> None:
        """Recompute everything derived from the weights; call once after loading a state dict.

        Rebuilds the window indices, the RoPE cos/sin tables (from the loaded ``rope.freqs``) and
        the position embeddings resized to every scale's grid, exactly as the official forward
        would compute them on the fly.
        """
        for layout in cast("Iterable[_WindowLayout]", self.window_layouts):
            layout.refresh(self.rope.freqs, self.config.rope_ratio)
        n = self.pretrain_grid
        dim = self.config.embed_dim
        base = self.pos_embed[:, 1:].reshape(1, n, n, dim).permute(0, 3, 1, 2).contiguous()
        for index, scale in enumerate(self.scales):
            grid_embed = base
            if scale.grid != n:
                grid_embed = F.interpolate(
                    base, size=(scale.grid, scale.grid), mode="bilinear", align_corners=False
                )
            tokens = grid_embed.flatten(2).transpose(1, 2).contiguous()
            setattr(self, f"_scale_pos_embed_{index}", tokens)

    def _embed(self, image: Tensor) -> Tensor:
        """Patch-embed every scale and add its position embedding; ``[B, L_total, D]``."""
        tokens = []
        for index, scale in enumerate(self.scales):
            x = image
            if scale.image_size != self.image_size:
                size = (scale.image_size, scale.image_size)
                x = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
            tokens.append(self.patch_embed(x) + getattr(self, f"_scale_pos_embed_{index}"))
        return torch.cat(tokens, dim=1)

    def _fuse_scales(self, x: Tensor, level: int) -> Tensor:
        """Per-scale tokens on the large grid, LayerNorm-ed, channel-concatenated; ``[B, h, w, S*D]``."""
        b, _, dim = x.shape
        large = self.scales[0].grid
        norm = self.multi_scale_fusion[level]
        parts = []
        for scale, tokens in zip(self.scales, x.split([s.num_tokens for s in self.scales], dim=1)):
            grid = tokens.reshape(b, scale.grid, scale.grid, dim)
            if scale.grid != large:
                grid = F.interpolate(
                    grid.permute(0, 3, 1, 2), size=(large, large), mode="bilinear", align_corners=False
                ).permute(0, 2, 3, 1)
            parts.append(norm(grid))
        return torch.cat(parts, dim=-1)

    def forward(self, image: Tensor) -> Tensor:
        """Encode a normalised ``[B, 3, S, S]`` image into ``[B, 256, S/16, S/16]`` embeddings."""
        if tuple(image.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"expected a {self.image_size}x{self.image_size} image, got {tuple(image.shape)}"
            )
        x = self._embed(image)
        fused = None
        level = 0
        for index, block in enumerate(self.blocks):
            x = block(x, self.window_layouts[index % 2])
            if index in self.config.out_indices:
                projected = self.lateral_convs[level](self._fuse_scales(x, level))
                fused = projected if fused is None else fused + projected
                level += 1
        assert fused is not None  # guaranteed by the out_indices check in __init__
        return self.out_conv(fused.permute(0, 3, 1, 2)).permute(0, 3, 1, 2)
