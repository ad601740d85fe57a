"""The oracle ships with the repository: its files are the official ones unchanged, and a missing
file stops the suite once, naming it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[1]


def test_golden_files_match_their_recorded_checksums(golden_dir: Path) -> None:
    recorded = dict(reversed(line.split(maxsplit=1)) for line in (golden_dir / "SHA256SUMS").read_text().splitlines())
    actual = {name: hashlib.sha256((golden_dir / name).read_bytes()).hexdigest() for name in recorded}
    assert actual == recorded


def test_a_missing_oracle_stops_the_suite_once_naming_the_files(tmp_path: Path) -> None:
    (tmp_path / "tiny512").mkdir()
    (tmp_path / "tiny512" / "golden.json").write_text("{}")
    env = {**os.environ, "I2F_GOLDEN_DIR": str(tmp_path)}
    process = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_prompt_map.py"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    output = process.stdout + process.stderr
    assert process.returncode == 4, output
    lines = [line for line in output.splitlines() if "golden data missing" in line]
    assert len(lines) == 1, output
    for name in ("base_official_keys.tsv", "tiny512/golden.npz", "tiny512/image.png", "tiny512/tiny_official.pth"):
        assert name in lines[0]
    assert "tiny512/golden.json" not in lines[0]
    assert " passed" not in output and " error" not in output
