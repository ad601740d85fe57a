"""Checkpoint layout and loading: the official key list, strict loading, clear refusals."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from i2f_deploy.cli import app
from i2f_deploy.config import load_config
from i2f_deploy.errors import CheckpointError
from i2f_deploy.model.checkpoint import read_state_dict
from i2f_deploy.model.inter2former import Inter2Former, build_model

pytestmark = pytest.mark.unit

TINY = "inter2former-tiny-512"


@pytest.fixture(scope="module")
def official_base_keys(golden_dir: Path) -> dict[str, tuple[list[int], str]]:
    rows = (golden_dir / "base_official_keys.tsv").read_text().splitlines()
    entries = [row.split("\t") for row in rows if row and not row.startswith("#")]
    return {key: (eval(shape), dtype) for key, shape, dtype in entries}


def test_base_model_has_exactly_the_official_keys(official_base_keys):
    expected = official_base_keys
    assert len(expected) == 431
    model = Inter2Former(load_config("inter2former-base-1024"))
    actual = {key: (list(t.shape), str(t.dtype).removeprefix("torch.")) for key, t in model.state_dict().items()}
    assert actual == expected


def test_base_layout_checkpoint_loads_strictly(tmp_path, official_base_keys):
    generator = torch.Generator().manual_seed(0)
    state = {
        key: torch.randn(shape, generator=generator).half() if dtype == "float32" else torch.zeros(shape, dtype=torch.int64)
        for key, (shape, dtype) in official_base_keys.items()
    }
    state["step"] = torch.tensor(1234)
    path = tmp_path / "base.pth"
    torch.save({"meta": {"note": "random"}, "state_dict": state}, path)
    model = build_model(load_config("inter2former-base-1024"), path)
    loaded = model.state_dict()
    assert torch.equal(loaded["neck.blocks.1.ffn.exp_bias"], state["neck.blocks.1.ffn.exp_bias"].float())
    assert loaded["backbone.pos_embed"].dtype == torch.float32


def test_bare_state_dict_and_mmengine_layout_give_the_same_weights(tmp_path, tiny_checkpoint):
    official = torch.load(tiny_checkpoint, weights_only=True)
    bare = tmp_path / "bare.pth"
    torch.save(official["state_dict"], bare)
    assert read_state_dict(bare).keys() == read_state_dict(tiny_checkpoint).keys()
    assert "step" not in read_state_dict(bare)


def test_pickled_objects_need_the_explicit_opt_in(tmp_path, tiny_checkpoint):
    official = torch.load(tiny_checkpoint, weights_only=True)
    path = tmp_path / "with_namespace.pth"
    torch.save({"meta": argparse.Namespace(epoch=3), "state_dict": official["state_dict"]}, path)
    with pytest.raises(CheckpointError, match="--allow-unsafe-pickle"):
        read_state_dict(path)
    build_model(load_config(TINY), path, allow_unsafe_pickle=True)


def broken_checkpoints(tmp_path: Path, tiny_checkpoint: Path) -> dict[str, Path]:
    official = torch.load(tiny_checkpoint, weights_only=True)["state_dict"]
    cases: dict[str, Path] = {}

    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(tiny_checkpoint.read_bytes()[: 100_000])
    cases["truncated"] = truncated

    wrong_keys = dict(official)
    wrong_keys["neck.extra.weight"] = torch.zeros(3)
    del wrong_keys["decode_head.mlp.0.bias"]
    cases["wrong keys"] = tmp_path / "wrong_keys.pth"
    torch.save({"state_dict": wrong_keys}, cases["wrong keys"])

    wrong_shape = dict(official)
    wrong_shape["neck.blocks.0.qkv_proj.weight"] = torch.zeros(95, 256)
    cases["wrong shape"] = tmp_path / "wrong_shape.pth"
    torch.save({"state_dict": wrong_shape}, cases["wrong shape"])

    cases["not a dict"] = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], cases["not a dict"])

    cases["missing file"] = tmp_path / "absent.pth"
    return cases


EXPECTED_MESSAGES = {
    "truncated": "cannot read checkpoint",
    "wrong keys": "1 missing: decode_head.mlp.0.bias [64]; 1 unexpected: neck.extra.weight [3]",
    "wrong shape": "neck.blocks.0.qkv_proj.weight checkpoint [95, 256] vs model [96, 256]",
    "not a dict": "holds a list",
    "missing file": "checkpoint not found",
}


@pytest.mark.parametrize("case", list(EXPECTED_MESSAGES))
def test_broken_checkpoint_gives_one_line_error(tmp_path, tiny_checkpoint, case):
    path = broken_checkpoints(tmp_path, tiny_checkpoint)[case]
    result = CliRunner().invoke(app, ["inspect-checkpoint", str(path), "--config", TINY])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert EXPECTED_MESSAGES[case] in lines[0]


def test_cli_process_reports_without_traceback(tmp_path, tiny_checkpoint):
    path = broken_checkpoints(tmp_path, tiny_checkpoint)["wrong shape"]
    process = subprocess.run(
        [sys.executable, "-m", "i2f_deploy.cli", "inspect-checkpoint", str(path), "--config", TINY],
        capture_output=True,
        text=True,
    )
    assert process.returncode == 2
    assert "Traceback" not in process.stderr
    assert process.stderr.count("\n") == 1


def test_cli_accepts_the_golden_checkpoint(tiny_checkpoint):
    result = CliRunner().invoke(app, ["inspect-checkpoint", str(tiny_checkpoint), "--config", TINY])
    assert result.exit_code == 0, result.output
    assert "fits inter2former-tiny-512" in result.stdout
