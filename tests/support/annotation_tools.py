"""Where the tests find the real annotation tools: the virtual environments ``.ci/annotation-tools.sh``
makes under ``I2F_ANNOTATION_TOOLS``. Without them a test skips, except where
``I2F_REQUIRE_ANNOTATION_TOOLS=1`` (CI) makes it fail, so CI cannot pass without running it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def tool_venv(name: str) -> Path:
    """The virtual environment of the tool ``name`` (``label-studio``, ``x-anylabeling``)."""
    root = os.environ.get("I2F_ANNOTATION_TOOLS")
    venv = Path(root) / name if root else None
    if venv is None or not (venv / "bin" / "python").exists():
        message = f"{name} is not installed: I2F_ANNOTATION_TOOLS=DIR bash .ci/annotation-tools.sh, then set I2F_ANNOTATION_TOOLS=DIR"
        if os.environ.get("I2F_REQUIRE_ANNOTATION_TOOLS"):
            pytest.fail(message)
        pytest.skip(message)
    return venv
