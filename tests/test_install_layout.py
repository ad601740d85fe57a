"""The repository's bare ``i2f_deploy/`` folder, imported instead of the installed package (Python
run from the repository root), says so in one line instead of failing later on a missing part."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[1]


def test_the_bare_source_folder_says_it_hides_the_installed_package(tmp_path: Path) -> None:
    shutil.copytree(REPO / "i2f_deploy", tmp_path / "i2f_deploy", ignore=shutil.ignore_patterns("__pycache__"))
    # -S: no site-packages, so nothing installed can supply custom_ops; the folder is found from the cwd
    process = subprocess.run([sys.executable, "-S", "-c", "import i2f_deploy"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=60)
    assert process.returncode == 1
    last = process.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ImportError: i2f_deploy is imported from {tmp_path / 'i2f_deploy'}, a source folder")
    assert "hides the installed package" in last and "pip install -e ." in last


def test_the_installed_package_has_its_custom_ops() -> None:
    process = subprocess.run([sys.executable, "-c", "import i2f_deploy.custom_ops, i2f_deploy.export_configs"],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
    assert process.returncode == 0, process.stderr
