"""Shared fixtures: the golden vectors of the official implementation (``tests/golden``, or the
folder ``I2F_GOLDEN_DIR`` names)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
GOLDEN_DIR = Path(os.environ.get("I2F_GOLDEN_DIR") or REPO / "tests" / "golden")
TINY_DIR = GOLDEN_DIR / "tiny512"
GOLDEN_FILES = ("base_official_keys.tsv", "tiny512/golden.json", "tiny512/golden.npz", "tiny512/image.png",
                "tiny512/tiny_official.pth")
DECODER_CASES = ("loop0", "loop1", "loop2", "state_medium", "state_small", "state_border")


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


def export_with(checkpoint: Path, config: str, out: Path, *extra: str) -> Path:
    """Run ``i2f-deploy export`` in-process and return the artifact directory."""
    from typer.testing import CliRunner

    from i2f_deploy.cli import app

    result = CliRunner().invoke(app, ["export", "--config", config, "--checkpoint", str(checkpoint), "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return out


def save_checkpoint(model, path: Path) -> Path:
    """Save a model's weights in the official mmengine layout."""
    import torch

    torch.save({"meta": {}, "state_dict": {**model.state_dict(), "step": torch.tensor(0)}}, path)
    return path


EXPORT_ONLY_MODULES = ("torch", "onnxscript")  # what the graphs are made with, never what runs them


def assert_runs_without_torch(code: str) -> None:
    """Run ``code`` in a fresh interpreter and check that it succeeds without importing torch
    or the other export-time modules (``EXPORT_ONLY_MODULES``)."""
    import subprocess
    import sys

    script = code + f"\nimport sys\nfor name in {EXPORT_ONLY_MODULES!r}:\n    assert name not in sys.modules, name + ' was imported'\n"
    process = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert process.returncode == 0, process.stderr


def assert_refused(result, message: str) -> None:
    """A command's refusal: exit 2, the last stderr line its only ``error:`` line, no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == [lines[-1]] and message in lines[-1], result.stderr
    assert "Traceback" not in result.output


def leftovers(parent: Path) -> list[str]:
    """Hidden scratch entries an interrupted export would leave in ``parent``."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def require_native(openvino: bool = True) -> None:
    """The native kernels must have been built by the install (a missing library fails the test:
    CI runs the native path; the function-body path has tests of its own). ``openvino=False``:
    the kernel library alone (the sanitizer build has no OpenVINO extension)."""
    from i2f_deploy.custom_ops.native import KERNELS_LIBRARY, OPENVINO_LIBRARY, library_dir

    wanted = (KERNELS_LIBRARY, OPENVINO_LIBRARY) if openvino else (KERNELS_LIBRARY,)
    missing = [name for name in wanted if not (library_dir() / name).is_file()]
    if missing:
        pytest.fail(f"native kernels not built: {', '.join(missing)} missing in {library_dir()} (pip install -e . with g++ and CMake)")
