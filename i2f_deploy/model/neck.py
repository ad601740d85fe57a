"""Inter2Former decoder neck: Dynamic Prompt Embedding (DPE), Dynamic Hybrid Attention (DHA)
and Hybrid MoE (HMoE) blocks, run once per click on the cached image embeddings."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from i2f_deploy.config import NeckConfig
from i2f_deploy.model.attention import BSQAttention, FullAttention
from i2f_deploy.model.moe import HybridMoE
from i2f_deploy.model.routing import Box, Routing, TokenRouter, crop, paste
from i2f_deploy.prompt_map import NUM_PROMPT_VALUES, POSSIBLY_BACKGROUND


class PromptConv(nn.Module):
    """The DPE convolution stack: stride-2 3x3 convs with ReLU, from pixels to the token grid."""

    def __init__(self, dims: tuple[int, ...], strides: tuple[int, ...]) -> None:
        super().__init__()
        self.stem = nn.Sequential()
        channels = (NUM_PROMPT_VALUES, *dims)
        for c_in, c_out, stride in zip(channels[:-1], channels[1:], strides):
            self.stem.append(nn.Conv2d(c_in, c_out, 2 * stride - 1, stride=stride, padding=stride - 1))
            self.stem.append(nn.ReLU())
        self.stride = int(torch.tensor(strides).prod())

    def forward(self, x: Tensor) -> Tensor:
        return self.stem(x)

    def on_labels(self, labels: Tensor, table: Tensor) -> Tensor:
        """The stack on prompt values [H, W], each embedded as its row of ``table``: [1,C,h,w]."""
        return self(F.embedding(labels.long(), table).permute(2, 0, 1)[None])


class NeckBlock(nn.Module):
    """LN -> qkv -> (full attention | BSQ attention) -> o_proj, residual; LN -> HMoE, residual."""

    def __init__(self, config: NeckConfig, grid: int) -> None:
        super().__init__()
        dim = config.embed_dim
        attn_dim = dim // config.downscale
        self.norm1 = nn.LayerNorm(dim)
        self.qkv_proj = nn.Linear(dim, 3 * attn_dim)
        self.o_proj = nn.Linear(attn_dim, dim)
        self.bsq_attn = BSQAttention(attn_dim, config.code_size)
        self.loc_attn = FullAttention(attn_dim, grid, config.rope_ratio, config.rope_theta)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = HybridMoE(dim, int(config.mlp_ratio * dim), config.downscale)

    def forward(self, x: Tensor, routed: Tensor, others: Tensor) -> Tensor:
        """x [N,C]; ``routed``/``others``: flat token indices of the two attention paths."""
        q, k, v = self.qkv_proj(self.norm1(x)).chunk(3, dim=-1)
        attn = x.new_zeros(x.shape[0], q.shape[-1])
        attn = attn.index_copy(0, others, self.bsq_attn(q[others], k, v))
        attn = attn.index_copy(0, routed, self.loc_attn(q[routed], k, v, routed))
        x = x + self.o_proj(attn)
        return x + self.ffn(self.norm2(x), routed)


@dataclass
class NeckOutput:
    features: Tensor  # [1,C,h,w]
    routing: Routing
    block_outputs: list[Tensor]  # [N,C] after each block


class Inter2FormerNeck(nn.Module):
    """``dense=True`` is the speed baseline: every token on full attention, DPE on the whole map."""

    # buffers, registered in __init__
    background_embedding: Tensor

    def __init__(self, config: NeckConfig, image_size: int, dense: bool = False) -> None:
        super().__init__()
        self.config = config
        self.ref_embeds = nn.Embedding(NUM_PROMPT_VALUES, NUM_PROMPT_VALUES)
        self.ref_conv = PromptConv(config.ref_dims, config.ref_strides)
        self.stride = self.ref_conv.stride
        self.grid = image_size // self.stride
        self.router = TokenRouter(self.stride, config.uncertainty_kernel_size, dense)
        self.blocks = nn.ModuleList(NeckBlock(config, self.grid) for _ in range(config.depth))
        self.register_buffer("background_embedding", torch.zeros(config.embed_dim), persistent=False)

    @torch.no_grad()
    def refresh_constants(self) -> None:
        """Per-weights constants: the DPE background vector and the BSQ code keys."""
        self.background_embedding.copy_(self._background_embedding())
        for block in cast("Iterable[NeckBlock]", self.blocks):
            block.bsq_attn.refresh_constants()

    def _background_embedding(self) -> Tensor:
        """What DPE gives a token far from any prompt: the stack on a 3x3-token all-"1" patch."""
        size = 3 * self.stride
        value = self.ref_embeds.weight[POSSIBLY_BACKGROUND]
        patch = value.view(1, -1, 1, 1).expand(1, -1, size, size)
        return self.ref_conv(patch)[0, :, 1, 1]

    def convolve_prompt(self, ref_label: Tensor, box: Box) -> Tensor:
        """The DPE stack on the prompt map inside ``box`` (pixels): [1,C,h,w] on its tokens."""
        return self.ref_conv.on_labels(crop(ref_label[0, 0], box), self.ref_embeds.weight)

    def embed_prompt(self, ref_label: Tensor, box: Box) -> Tensor:
        """DPE: [C,h,w] prompt embedding, convolved inside ``box`` only, constant elsewhere."""
        local = self.convolve_prompt(ref_label, box)
        tokens = box.shrunk(self.stride)
        inside = paste(torch.ones_like(local[:, :1]), tokens, self.grid, self.grid) > 0
        background = self.background_embedding.view(1, -1, 1, 1)
        return torch.where(inside, paste(local, tokens, self.grid, self.grid), background)[0]

    def forward(self, embeddings: Tensor, ref_label: Tensor) -> NeckOutput:
        """embeddings [1,C,h,w], ref_label [1,1,S,S] integer 0..4."""
        routing = self.router(ref_label)
        x = embeddings + self.embed_prompt(ref_label, routing.box)[None]
        channels = x.shape[1]
        # channels last as one 4-D permutation (the graphs' runtimes do that as a fast layout
        # reorder, where a 2-D [C, N] transpose of the flattened map took several ms a click)
        tokens = x.permute(0, 2, 3, 1).reshape(-1, channels)
        block_outputs = []
        for block in self.blocks:
            tokens = block(tokens, routing.routed, routing.others)
            block_outputs.append(tokens)
        # contiguous: eager PyTorch ran the DLU on the permuted (channels-last) view up to 1.5x
        # slower; the export writes no node for it
        features = tokens.reshape(1, self.grid, self.grid, channels).permute(0, 3, 1, 2).contiguous()
        return NeckOutput(features, routing, block_outputs)
