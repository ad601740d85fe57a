"""Shared fixtures: the golden vectors of the official implementation (``tests/golden``, or the
folder ``I2F_GOLDEN_DIR`` names) and what is made from them once. Helpers are in ``support/``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support.commands import export_with, save_checkpoint
from support.golden import GOLDEN_DIR, GOLDEN_FILES, TINY_DIR
from support.images import read_rgb


def pytest_configure(config: pytest.Config) -> None:
    """Without the oracle nearly every test would error on its own: stop once, naming what is missing."""
    missing = [name for name in GOLDEN_FILES if not (GOLDEN_DIR / name).is_file()]
    if missing:
        raise pytest.UsageError(f"golden data missing in {GOLDEN_DIR}: {', '.join(missing)} "
                                "(they ship in tests/golden; I2F_GOLDEN_DIR points elsewhere)")


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return GOLDEN_DIR


@pytest.fixture(scope="session")
def tiny_checkpoint() -> Path:
    return TINY_DIR / "tiny_official.pth"


@pytest.fixture(scope="session")
def golden() -> dict[str, np.ndarray]:
    with np.load(TINY_DIR / "golden.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="session")
def golden_meta() -> dict:
    return json.loads((TINY_DIR / "golden.json").read_text())


@pytest.fixture(scope="session")
def golden_image_path() -> Path:
    return TINY_DIR / "image.png"


@pytest.fixture(scope="session")
def golden_rgb(golden_image_path) -> np.ndarray:
    """The golden image as RGB uint8 [H, W, 3], read-only (shared by every test: copy to draw on it)."""
    image = read_rgb(golden_image_path)
    image.flags.writeable = False
    return image


@pytest.fixture(scope="session")
def tiny_config():
    from i2f_deploy.config import load_config

    return load_config("inter2former-tiny-512")


@pytest.fixture(scope="session")
def tiny_model(tiny_config, tiny_checkpoint):
    from i2f_deploy.model.inter2former import build_model

    return build_model(tiny_config, tiny_checkpoint)


@pytest.fixture(scope="session")
def portable_model(tiny_config, tiny_checkpoint):
    """The golden tiny model with the edge-detector numerics the exported encoder implements."""
    from i2f_deploy.model.inter2former import build_model

    model = build_model(tiny_config, tiny_checkpoint)
    model.edge_detector.use_numerics("portable")
    return model


@pytest.fixture(scope="session")
def golden_encoded(golden):
    """The golden encoder outputs as tensors: (embeddings, [edge_map_0..3])."""
    import torch

    edges = [torch.from_numpy(golden[f"edge_map_{i}"]) for i in range(4)]
    return torch.from_numpy(golden["image_embeddings"]), edges


@pytest.fixture(scope="session")
def tiny_artifacts(tmp_path_factory, tiny_checkpoint) -> Path:
    """The golden tiny checkpoint exported once per session (ONNX + OpenVINO IR)."""
    out = tmp_path_factory.mktemp("export") / "tiny"
    return export_with(tiny_checkpoint, "inter2former-tiny-512", out, "--openvino")


@pytest.fixture(scope="session")
def base_1024_export(tmp_path_factory) -> tuple[Path, Path]:
    """(artifact dir, checkpoint): seeded random base weights in the official layout, exported
    once per session at 1024 without onnxsim (for the slow base-size tests)."""
    from i2f_deploy.config import load_config
    from i2f_deploy.model.inter2former import Inter2Former
    from i2f_deploy.model.random_weights import randomize_weights

    folder = tmp_path_factory.mktemp("base-1024")
    model = Inter2Former(load_config("inter2former-base-1024"))
    randomize_weights(model, seed=0)
    checkpoint = save_checkpoint(model, folder / "base.pth")
    del model
    return export_with(checkpoint, "inter2former-base-1024", folder / "art", "--no-simplify"), checkpoint
