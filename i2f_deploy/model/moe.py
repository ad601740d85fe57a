"""Hybrid mixture of experts (HMoE): a shared SwiGLU expert for every token, plus a top-1
routed expert for the boundary tokens, mixed by a softmax over the two gate scores."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden)
        self.w2 = nn.Linear(dim, hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, hidden_norm: nn.LayerNorm) -> Tensor:
        return self.w3(hidden_norm(F.silu(self.w1(x)) * self.w2(x)))


class HybridMoE(nn.Module):
    """Shared expert on all tokens; routed tokens also get ``argmax(scores + exp_bias)`` expert."""

    def __init__(self, dim: int, hidden: int, num_experts: int) -> None:
        super().__init__()
        expert_hidden = hidden // num_experts
        self.num_experts = num_experts
        self.shared_ffn = SwiGLU(dim, expert_hidden)
        self.shared_ln = nn.LayerNorm(expert_hidden)
        self.shared_gate = nn.Sequential(nn.Linear(dim, 1), nn.Sigmoid())
        self.select_ffn_w1 = nn.Parameter(torch.zeros(num_experts, expert_hidden, dim))
        self.select_ffn_b1 = nn.Parameter(torch.zeros(num_experts, expert_hidden))
        self.select_ffn_w2 = nn.Parameter(torch.zeros(num_experts, expert_hidden, dim))
        self.select_ffn_b2 = nn.Parameter(torch.zeros(num_experts, expert_hidden))
        self.select_ffn_w3 = nn.Parameter(torch.zeros(num_experts, dim, expert_hidden))
        self.select_ffn_b3 = nn.Parameter(torch.zeros(num_experts, dim))
        self.select_ln = nn.LayerNorm(expert_hidden)
        self.expert_gate = nn.Sequential(nn.Linear(dim, num_experts), nn.Sigmoid())
        self.register_buffer("exp_bias", torch.zeros(num_experts))
        self.register_buffer("steps", torch.tensor(0))

    def routed_expert(self, x: Tensor, expert: int) -> Tensor:
        hidden = F.silu(F.linear(x, self.select_ffn_w1[expert], self.select_ffn_b1[expert]))
        hidden = hidden * F.linear(x, self.select_ffn_w2[expert], self.select_ffn_b2[expert])
        return F.linear(self.select_ln(hidden), self.select_ffn_w3[expert], self.select_ffn_b3[expert])

    def forward(self, x: Tensor, routed_tokens: Tensor) -> Tensor:
        """x [N,C]; routed_tokens: flat indices [M] (may be empty) -> [N,C]."""
        shared = self.shared_ffn(x, self.shared_ln)
        x_routed = x[routed_tokens]
        shared_score = self.shared_gate(x_routed)
        expert_scores = self.expert_gate(x_routed)
        choice = (expert_scores + self.exp_bias).argmax(dim=-1)
        expert_score = expert_scores.gather(-1, choice[:, None])
        shared_weight, expert_weight = torch.cat([shared_score, expert_score], -1).softmax(-1).unbind(-1)
        expert_out = torch.zeros_like(x_routed)
        for expert in range(self.num_experts):
            chosen = choice == expert
            if chosen.any():
                expert_out[chosen] = self.routed_expert(x_routed[chosen], expert)
        mixed = shared[routed_tokens] * shared_weight[:, None] + expert_out * expert_weight[:, None]
        return shared.index_copy(0, routed_tokens, mixed)
