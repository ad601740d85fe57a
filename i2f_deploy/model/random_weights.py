"""Random weights in the official layout, for trying the tools without a checkpoint.

Every learned tensor is drawn (zero-initialised ones included, so every path is exercised);
the fixed Canny filters and the RoPE frequencies keep their defined values.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

FIXED_PREFIXES = ("edge_detector.canny.", "backbone.rope.")
NORMS = (nn.LayerNorm, nn.GroupNorm)


def _draw(module: nn.Module, name: str, tensor: Tensor, generator: torch.Generator) -> Tensor:
    noise = torch.randn(tensor.shape, generator=generator)
    if isinstance(module, NORMS):
        return 1.0 + 0.1 * noise if name == "weight" else 0.02 * noise
    if isinstance(module, nn.Embedding):
        return noise
    if tensor.ndim >= 2:
        fan_in = tensor[0].numel() if isinstance(module, (nn.Linear, nn.Conv2d)) else tensor.shape[-1]
        return noise / fan_in**0.5
    return 0.02 * noise


@torch.no_grad()
def randomize_weights(model: nn.Module, seed: int = 0) -> None:
    """Overwrite every learned float tensor of ``model`` with seeded random values."""
    generator = torch.Generator().manual_seed(seed)
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        if prefix.startswith(FIXED_PREFIXES):
            continue
        own = list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))
        for name, tensor in own:
            if f"{prefix}{name}".startswith(FIXED_PREFIXES) or not tensor.is_floating_point():
                continue
            if name not in module.state_dict(keep_vars=True):
                continue
            tensor.copy_(_draw(module, name, tensor, generator))
    refresh = getattr(model, "refresh_constants", None)
    if refresh is not None:
        refresh()
