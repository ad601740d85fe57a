"""The HRSAM backbone against the official implementation's golden embeddings and key layout."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from i2f_deploy.config import load_config
from i2f_deploy.model.backbone import HRSAMBackbone

pytestmark = pytest.mark.unit

PREFIX = "backbone."


def _tiny_backbone_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    raw = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    return {
        key[len(PREFIX):]: value.float() if value.is_floating_point() else value
        for key, value in raw.items()
        if key.startswith(PREFIX)
    }


@pytest.fixture(scope="module")
def tiny_backbone(tiny_checkpoint: Path) -> HRSAMBackbone:
    config = load_config("inter2former-tiny-512")
    model = HRSAMBackbone(config.model.backbone, config.target_size).eval()
    model.load_state_dict(_tiny_backbone_state(tiny_checkpoint), strict=True)
    model.refresh_constants()
    return model


def test_tiny_matches_official_embeddings(
    tiny_backbone: HRSAMBackbone, golden: dict[str, np.ndarray]
) -> None:
    with torch.no_grad():
        out = tiny_backbone(torch.from_numpy(golden["input"]).float())
    expected = golden["image_embeddings"]
    assert out.shape == expected.shape == (1, 256, 32, 32)
    error = float(np.abs(out.numpy() - expected).max())
    print(f"backbone max abs error vs official: {error:.3e}")
    assert error <= 1e-4


def test_tiny_config_matches_golden(golden_meta: dict) -> None:
    official = golden_meta["model_config"]["backbone"]
    ours = load_config("inter2former-tiny-512").model.backbone
    for field in ("depth", "embed_dim", "num_heads", "mlp_ratio", "patch_size", "img_size",
                  "window_size", "final_embed_dim"):
        assert getattr(ours, field) == official[field], field
    assert list(ours.downsample_sizes) == list(official["downsample_sizes"])
    assert list(ours.out_indices) == list(official["out_indices"])


def test_refresh_uses_loaded_rope_freqs(tiny_backbone: HRSAMBackbone) -> None:
    """The rotary tables follow the checkpoint's ``rope.freqs``, not a recomputed default."""
    model = HRSAMBackbone(tiny_backbone.config, tiny_backbone.image_size)
    state = tiny_backbone.state_dict()
    state["rope.freqs"] = state["rope.freqs"] * 2
    model.load_state_dict(state)
    model.refresh_constants()
    layout, reference = model.window_layouts[1], tiny_backbone.window_layouts[1]
    assert torch.equal(layout.gather, reference.gather)
    assert not torch.allclose(layout.rope_cos, reference.rope_cos)


def test_constants_stay_out_of_state_dict(tiny_backbone: HRSAMBackbone) -> None:
    keys = set(tiny_backbone.state_dict())
    assert not any("window_layouts" in key or "scale_pos_embed" in key for key in keys)


def test_base_state_dict_matches_official_keys(golden_dir: Path) -> None:
    expected = {}
    with open(golden_dir / "base_official_keys.tsv", newline="") as handle:
        for row in csv.reader(handle, delimiter="\t"):
            if row and row[0].startswith(PREFIX):
                shape = [int(n) for n in row[1].strip("[]").split(",") if n.strip()]
                expected[row[0][len(PREFIX):]] = (shape, row[2])
    assert expected, "no backbone rows in base_official_keys.tsv"

    config = load_config("inter2former-base-1024")
    with torch.device("meta"):
        model = HRSAMBackbone(config.model.backbone, config.target_size)
    ours = {
        key: (list(value.shape), str(value.dtype).removeprefix("torch."))
        for key, value in model.state_dict().items()
    }
    assert sorted(ours) == sorted(expected)
    assert ours == expected
