"""i2f-deploy: Inter2Former on CPUs through ONNX Runtime and OpenVINO."""

import importlib.util
from pathlib import Path

__version__ = "0.1.0"


def _require_installed_layout() -> None:
    """The repository's top-level ``custom_ops/`` and ``export_configs/`` join the package only
    when it is installed. Python run from the repository root imports the bare source folder
    instead, hiding any installed copy; say so rather than fail later on a missing module."""
    if importlib.util.find_spec(f"{__name__}.custom_ops") is None:
        raise ImportError(f"i2f_deploy is imported from {Path(__file__).parent}, a source folder without the parts "
                          "its install adds (custom_ops, export_configs); from the repository root it hides the "
                          "installed package: run from another directory, or install it editable (pip install -e .)")


_require_installed_layout()
