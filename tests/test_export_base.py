"""Base-size exports (ViT-B): random weights in the official layout, against the PyTorch model.

The 1024 export runs in CI; the 2048 one is marked slow.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support.commands import export_with, save_checkpoint

from i2f_deploy import runtime
from i2f_deploy.compare import assert_close
from i2f_deploy.config import load_config
from i2f_deploy.model.inter2former import Inter2Former
from i2f_deploy.model.random_weights import randomize_weights

pytestmark = pytest.mark.graph

EXPECTED_ROUTED = {"zero-routed": 0, "all-routed": 1}  # share of all tokens
FEATURES = ("image_embeddings", "edge_map_0", "edge_map_1", "edge_map_2", "edge_map_3")


def prompt_states(size: int) -> dict[str, np.ndarray]:
    """Decoder inputs covering the routing extremes and the object positions that matter."""
    yy, xx = np.mgrid[:size, :size]
    states = {
        "zero-routed": np.zeros((size, size), np.uint8),
        "all-routed": np.full((size, size), 2, np.uint8),
    }
    corner = np.ones((size, size), np.uint8)
    corner[(yy - 12) ** 2 + (xx - 12) ** 2 <= 100] = 3
    corner[(yy - 10) ** 2 + (xx - 10) ** 2 <= 25] = 4
    states["small-object-at-corner"] = corner
    medium = np.ones((size, size), np.uint8)
    medium[((yy - size * 0.4) / (size * 0.15)) ** 2 + ((xx - size * 0.55) / (size * 0.2)) ** 2 <= 1] = 3
    medium[(yy - int(size * 0.4)) ** 2 + (xx - int(size * 0.55)) ** 2 <= 25] = 4
    medium[(yy - int(size * 0.8)) ** 2 + (xx - int(size * 0.2)) ** 2 <= 25] = 0
    states["medium-object"] = medium
    return {name: state[None, None] for name, state in states.items()}


def base_model(size: int) -> Inter2Former:
    """Seeded random base weights; the DLU locator pushed below threshold everywhere, so the
    decoder also takes its no-token-above-threshold path (whole-image DLU box)."""
    model = Inter2Former(load_config(f"inter2former-base-{size}"))
    randomize_weights(model, seed=0)
    with torch.no_grad():
        model.decode_head.mlp[6].bias.fill_(-1000.0)
    return model


def check_against_pytorch(size: int, tmp_path) -> None:
    model = base_model(size)
    artifacts = export_with(save_checkpoint(model, tmp_path / "base.pth"), f"inter2former-base-{size}", tmp_path / "art", "--no-simplify")
    del model.backbone  # the decoder check needs only the neck and the head
    generator = torch.Generator().manual_seed(1)
    grid = size // 16
    features = {
        "image_embeddings": torch.randn(1, 256, grid, grid, generator=generator),
        **{f"edge_map_{i}": torch.randn(1, 256 // 4**i, size // 2 ** (3 - i), size // 2 ** (3 - i), generator=generator) for i in range(4)},
    }
    feeds = {name: t.numpy() for name, t in features.items()}
    edge_maps = [features[f"edge_map_{i}"] for i in range(4)]
    for backend in ("onnxruntime", "openvino"):
        decoder = runtime.load(artifacts, "decoder", backend)
        for name, ref_label in prompt_states(size).items():
            reference = model.decode_detailed(features["image_embeddings"], edge_maps, torch.from_numpy(ref_label))
            out = decoder.run({**feeds, "ref_label": ref_label})
            assert int(out["num_routed"]) == reference.routed_tokens.numel(), (backend, name)
            if name in EXPECTED_ROUTED:
                assert int(out["num_routed"]) == EXPECTED_ROUTED[name] * grid * grid
            np.testing.assert_array_equal(out["dpe_box"], reference.routing.box_values.numpy())
            np.testing.assert_array_equal(out["dlu_box"], [0, 0, grid, grid])
            assert_close(out["logits"], reference.logits.numpy(), atol=1e-3, what=(backend, name))
        del decoder


def test_base_1024_export_matches_pytorch(tmp_path):
    check_against_pytorch(1024, tmp_path)


@pytest.mark.slow
def test_base_2048_export_matches_pytorch(tmp_path):
    check_against_pytorch(2048, tmp_path)
