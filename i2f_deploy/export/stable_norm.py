"""GroupNorm(1, C) written so every backend accumulates it in a numerically safe order."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from i2f_deploy.model.edges import sum_over_plane


def _mean(x: Tensor) -> Tensor:
    height, width = x.shape[-2:]
    return (sum_over_plane(x) / (height * width)).mean(dim=-3, keepdim=True)


def standardise(x: Tensor, eps: float) -> Tensor:
    """GroupNorm(1) without its affine: means as sums by matrix products, a centred second pass."""
    centred = x - _mean(x)
    return centred / torch.sqrt(_mean(centred * centred) + eps)


class StableGroupNorm(nn.Module):
    """GroupNorm with one group, computed by :func:`standardise` then its affine.

    Exported as is, GroupNorm(1) becomes InstanceNormalization, which ONNX Runtime accumulates in
    a single float32 pass: on the 2048 DLU crops (16M elements) logits drifted by 1.8e-3 from
    PyTorch, and on the 512x512 edge-pyramid levels the edge maps drifted by 4e-3.
    """

    def __init__(self, norm: nn.GroupNorm) -> None:
        super().__init__()
        if norm.num_groups != 1:
            raise ValueError("only GroupNorm(1, C) is used by the model")
        self.norm = norm

    def forward(self, x: Tensor) -> Tensor:
        normalised = standardise(x, self.norm.eps)
        return normalised * self.norm.weight.view(1, -1, 1, 1) + self.norm.bias.view(1, -1, 1, 1)


def stabilise_group_norms(module: nn.Module) -> None:
    """Replace every GroupNorm(1, C) inside ``module`` (in place) by :class:`StableGroupNorm`."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.GroupNorm):
            setattr(module, name, StableGroupNorm(child))
        else:
            stabilise_group_norms(child)
