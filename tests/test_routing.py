"""Token routing: agreement with the official float formula, and the two extremes (no token
routed, every token routed) against a direct dense computation of the neck.

Under the official rule an all-"possibly background" map routes every token (the float variance
of a constant window of 1s is a positive rounding residual); the map without any routed token
is the all-"definitely background" one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from support.prompt_maps import SIZE, STRIDE, random_prompt_map, scattered_prompt_map

from i2f_deploy.compare import assert_close
from i2f_deploy.model.attention import rope_tables
from i2f_deploy.model.rope import apply_rope
from i2f_deploy.model.routing import TokenRouter

pytestmark = pytest.mark.unit


def official_routing(ref_label: torch.Tensor, kernel_size: int = 7) -> torch.Tensor:
    """The official rule as the official code computes it: float variance > 0 in the DPE box."""
    box = TokenRouter(STRIDE, kernel_size)(ref_label).box
    label = ref_label.float().reshape(1, 1, SIZE, SIZE)
    crop = label[..., box.top : box.bottom, box.left : box.right]
    padded = F.pad(crop, (kernel_size // 2,) * 4, mode="reflect")
    kernel = torch.ones(1, 1, kernel_size, kernel_size) / kernel_size**2
    variance = F.conv2d(padded**2, kernel) - F.conv2d(padded, kernel) ** 2
    mask = torch.zeros_like(label)
    mask[..., box.top : box.bottom, box.left : box.right] = (variance > 0).float()
    mask[label == 2] = 1.0
    return F.adaptive_max_pool2d(mask, SIZE // STRIDE)[0, 0] > 0


@pytest.mark.parametrize("make_map", [random_prompt_map, scattered_prompt_map])
def test_routing_equals_the_official_float_rule(make_map):
    rng = np.random.default_rng(7)
    for _ in range(40):
        ref_label = make_map(rng)
        official = torch.nonzero(official_routing(ref_label).flatten()).flatten()
        assert torch.equal(TokenRouter(STRIDE, 7)(ref_label).routed, official)


def direct_neck(neck, embeddings: torch.Tensor, ref_label: torch.Tensor, routed: torch.Tensor) -> torch.Tensor:
    """The neck computed densely: whole-image DPE, both attentions and every expert for every
    token, then selected per token by ``routed``. No index-based routing involved."""
    grid = SIZE // STRIDE
    dpe = neck.ref_conv(neck.ref_embeds(ref_label[0, 0].long()).permute(2, 0, 1)[None])
    x = (embeddings + dpe).flatten(2)[0].T
    cos, sin = rope_tables(grid, grid, 32, 0.5, 1e4)
    for block in neck.blocks:
        q, k, v = block.qkv_proj(block.norm1(x)).chunk(3, dim=-1)
        scale = q.shape[-1] ** -0.5
        full = torch.softmax(scale * apply_rope(q, cos, sin) @ apply_rope(k, cos, sin).T, -1) @ v
        token_bits = (block.bsq_attn.code_proj(k) >= 0).float()
        token_keys = torch.cat([token_bits, 1 - token_bits], -1) @ block.bsq_attn.codebook
        bsq = torch.softmax(scale * q @ token_keys.T, -1) @ v
        x = x + block.o_proj(torch.where(routed[:, None], full, bsq))
        h = block.norm2(x)
        ffn = block.ffn
        shared = ffn.shared_ffn(h, ffn.shared_ln)
        scores = ffn.expert_gate(h)
        choice = (scores + ffn.exp_bias).argmax(-1)
        experts = torch.stack([ffn.routed_expert(h, e) for e in range(ffn.num_experts)])
        chosen = experts[choice, torch.arange(h.shape[0])]
        weights = torch.cat([ffn.shared_gate(h), scores.gather(-1, choice[:, None])], -1).softmax(-1)
        mixed = weights[:, :1] * shared + weights[:, 1:] * chosen
        x = x + torch.where(routed[:, None], mixed, shared)
    return x.T.reshape(1, -1, grid, grid)


@pytest.mark.parametrize(
    ("value", "expected_routed"),
    [(0, 0), (2, 1024), (1, 1024)],
    ids=["all-definitely-background", "all-unknown", "all-possibly-background"],
)
def test_routing_extremes_match_direct_computation(tiny_model, golden_encoded, value, expected_routed):
    embeddings, edge_maps = golden_encoded
    ref_label = torch.full((1, 1, SIZE, SIZE), value, dtype=torch.uint8)
    result = tiny_model.decode_detailed(embeddings, edge_maps, ref_label)
    assert result.routed_tokens.numel() == expected_routed
    assert int(official_routing(ref_label).sum()) == expected_routed
    routed = torch.zeros(1024, dtype=torch.bool)
    routed[result.routed_tokens] = True
    with torch.no_grad():
        reference = direct_neck(tiny_model.neck, embeddings, ref_label, routed)
    assert_close(result.neck_out.numpy(), reference.numpy(), atol=1e-4)
    assert torch.isfinite(result.logits).all()
