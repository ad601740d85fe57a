"""Commands as a test runs them: in-process through the CLI, or in a fresh interpreter; and what
a refusal must look like."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


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
