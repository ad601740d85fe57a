"""Where the golden vectors of the official implementation are: ``tests/golden``, or the folder
``I2F_GOLDEN_DIR`` names."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GOLDEN_DIR = Path(os.environ.get("I2F_GOLDEN_DIR") or REPO / "tests" / "golden")
TINY_DIR = GOLDEN_DIR / "tiny512"
GOLDEN_FILES = ("base_official_keys.tsv", "tiny512/golden.json", "tiny512/golden.npz", "tiny512/image.png",
                "tiny512/tiny_official.pth")
DECODER_CASES = ("loop0", "loop1", "loop2", "state_medium", "state_small", "state_border")
