"""Bad inputs on every command: exit 2, one ``error:`` line naming the culprit, nothing left behind.

One test per kind of input a new user got a traceback, a silent default or a wasted run from
(the artifact-integrity and thread-count rows are in test_export.py and test_session.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support.commands import assert_refused, leftovers
from typer.testing import CliRunner

from i2f_deploy.cli import app
from i2f_deploy.config import available_configs, load_config
from i2f_deploy.errors import ConfigError

pytestmark = pytest.mark.graph

TINY = "inter2former-tiny-512"
TINY_TOML = (Path(__file__).parents[1] / "export_configs" / f"{TINY}.toml").read_text()


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def export_refused(tmp_path: Path, message: str, *args: str) -> None:
    out = tmp_path / "art"
    assert_refused(invoke("export", "--out", out, *args), message)
    assert not out.exists() and leftovers(tmp_path) == []


def linked_copy(artifacts: Path, tmp_path: Path) -> Path:
    """A copy of an artifact directory whose manifest.json can be edited (the rest hard-linked)."""
    copy = tmp_path / "copy"
    shutil.copytree(artifacts, copy, copy_function=os.link)
    manifest = copy / "manifest.json"
    manifest.unlink()
    shutil.copy(artifacts / "manifest.json", manifest)
    return copy


def edit_manifest(directory: Path, **changes: object) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


# ---------------------------------------------------------------------------------- configs
def tiny_toml_with(old: str, new: str) -> str:
    assert old in TINY_TOML
    return TINY_TOML.replace(old, new, 1)


CONFIG_CASES = {
    "missing-embed-dim": (tiny_toml_with("embed_dim = 64\n", ""), "[model.backbone] is missing: embed_dim"),
    "negative-depth": (tiny_toml_with("[model.edge_detector]\ndepth = 1", "[model.edge_detector]\ndepth = -1"),
                       "model.edge_detector.depth must be at least 1, got -1"),
    "target-size-text": (tiny_toml_with("target_size = 512", 'target_size = "big"'), "target_size must be an integer, got 'big'"),
    "zero-window": (tiny_toml_with("window_size = 16", "window_size = 0"), "model.backbone.window_size must be at least 1, got 0"),
    "indivisible-heads": (tiny_toml_with("num_heads = 2", "num_heads = 3"), "model.backbone.embed_dim 64 must be divisible by num_heads 3"),
    "threshold-text": (tiny_toml_with("threshold = -2.0", 'threshold = "abc"'), "model.decode_head.threshold must be a number, got 'abc'"),
    "unknown-field": (tiny_toml_with("depth = 2\n", "depth = 2\ndepht = 3\n"), "unknown field(s) in [model.backbone]: depht"),
    "out-index-beyond-depth": (tiny_toml_with("out_indices = [0, 1]", "out_indices = [0, 5]"),
                               "out_indices [0, 5] must be increasing block indices below depth 2"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config_fields_are_named_before_any_work(tmp_path, case):
    text, message = CONFIG_CASES[case]
    config = tmp_path / "custom.toml"
    config.write_text(text)
    export_refused(tmp_path, message, "-c", config, "--random-weights")


def test_a_config_error_names_the_file_and_every_bad_field(tmp_path):
    config = tmp_path / "custom.toml"
    config.write_text(tiny_toml_with("window_size = 16", "window_size = 0").replace("code_size = 8", "code_size = 17"))
    with pytest.raises(ConfigError) as refused:
        load_config(config)
    assert str(refused.value) == (f"config {config}: model.backbone.window_size must be at least 1, got 0; "
                                  "model.neck.code_size must be at most 16, got 17")


def test_shipped_configs_are_valid_and_list_every_field_or_a_base():
    for name in available_configs():
        config = load_config(name)
        assert config.name == name
    assert load_config("inter2former-base-2048").model == load_config("inter2former-base-1024").model


def test_a_config_can_start_from_a_shipped_one(tmp_path):
    path = tmp_path / "deeper.toml"
    path.write_text(f'base = "{TINY}"\nname = "tiny-deeper"\n[model.neck]\ndepth = 3\n')
    config = load_config(path)
    tiny = load_config(TINY)
    assert config.name == "tiny-deeper" and config.target_size == tiny.target_size
    assert config.model.neck.depth == 3 and config.model.backbone == tiny.model.backbone
    path.write_text('base = "no-such-config"\nname = "x"\n')
    with pytest.raises(ConfigError, match="base = 'no-such-config' is not a shipped config"):
        load_config(path)


# ------------------------------------------------------------------------------ checkpoints
def test_a_text_file_named_pth_is_not_a_checkpoint(tmp_path):
    checkpoint = tmp_path / "weights.pth"
    checkpoint.write_text("this is not a checkpoint\n")
    assert_refused(invoke("inspect-checkpoint", checkpoint, "-c", TINY), "is not a PyTorch checkpoint")
    export_refused(tmp_path, "is not a PyTorch checkpoint", "-c", TINY, "--checkpoint", checkpoint)


def test_unsafe_pickle_of_a_missing_class_is_one_line(tmp_path):
    checkpoint = tmp_path / "custom.pth"
    module = tmp_path / "vanished_module.py"
    module.write_text("class Weights:\n    pass\n")
    subprocess.run([sys.executable, "-c", f"import sys, torch; sys.path.insert(0, {str(tmp_path)!r}); import vanished_module; "
                    f"torch.save({{'state_dict': {{'w': vanished_module.Weights()}}}}, {str(checkpoint)!r})"], check=True)
    module.unlink()
    message = "it needs code that is not installed here (ModuleNotFoundError"
    assert_refused(invoke("inspect-checkpoint", checkpoint, "-c", TINY, "--allow-unsafe-pickle"), message)
    export_refused(tmp_path, message, "-c", TINY, "--checkpoint", checkpoint, "--allow-unsafe-pickle")


def test_non_finite_weights_are_refused_by_name(tmp_path, tiny_checkpoint):
    raw = torch.load(tiny_checkpoint, weights_only=True)
    state = raw["state_dict"]
    state["neck.blocks.0.o_proj.weight"][0, 0] = float("nan")
    state["decode_head.mlp.0.bias"][:2] = float("inf")
    checkpoint = tmp_path / "nan.pth"
    torch.save(raw, checkpoint)
    message = "has NaN or Inf in 2 tensor(s): neck.blocks.0.o_proj.weight (1 values), decode_head.mlp.0.bias (2 values)"
    assert_refused(invoke("inspect-checkpoint", checkpoint, "-c", TINY), message)
    export_refused(tmp_path, message, "-c", TINY, "--checkpoint", checkpoint)


# ----------------------------------------------------------------------------------- export
@pytest.mark.parametrize("opset", [7, 17, 99])
def test_unsupported_opsets_are_refused(tmp_path, opset):
    export_refused(tmp_path, f"--opset {opset}: the graphs can be written at opset 18 only", "-c", TINY, "--random-weights",
                   "--opset", str(opset))


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nobody can write into: a read-only tmpfs (root), or mode 0555 (other users)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"root without the right to mount a read-only file system here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_export_into_a_read_only_place_is_refused_first(tmp_path, read_only_dir):
    out = read_only_dir / "art"
    result = invoke("export", "-c", TINY, "--random-weights", "--out", out)
    assert_refused(result, f"--out {read_only_dir}: {read_only_dir} is not writable")
    assert "building" not in result.stderr and not out.exists()


# ------------------------------------------------------------------- validate, bench, predict
def report_options(tmp_path: Path, read_only_dir: Path) -> dict[str, tuple[list[str], str]]:
    missing = tmp_path / "no-such-dir" / "r.json"
    return {
        "validate-missing": (["validate", "--report", missing], f"--report {missing}: directory {missing.parent} does not exist"),
        "validate-read-only": (["validate", "--report", read_only_dir / "r.json"], "not writable here"),
        "bench-json": (["bench", "--json", missing], f"--json {missing}: directory {missing.parent} does not exist"),
        "bench-csv": (["bench", "--csv", read_only_dir / "r.csv"], "not writable here"),
        "bench-plot-is-dir": (["bench", "--plot", tmp_path], f"--plot {tmp_path} is a directory"),
    }


@pytest.mark.parametrize("case", ["validate-missing", "validate-read-only", "bench-json", "bench-csv", "bench-plot-is-dir"])
def test_report_paths_are_checked_before_the_run(tiny_artifacts, tiny_checkpoint, tmp_path, read_only_dir, case):
    (command, *options), message = report_options(tmp_path, read_only_dir)[case]
    result = invoke(command, tiny_artifacts, "--checkpoint", tiny_checkpoint, *options)
    assert_refused(result, message)
    assert len(result.output.strip().splitlines()) == 1  # refused before any progress line


def test_validate_refuses_a_checkpoint_for_a_random_weights_export(tiny_artifacts, tiny_checkpoint, tmp_path):
    copy = linked_copy(tiny_artifacts, tmp_path)
    edit_manifest(copy, weights={"source": "random", "seed": 3})
    message = f"was exported with random weights (seed 3), not from {tiny_checkpoint}: drop --checkpoint"
    assert_refused(invoke("validate", copy, "--checkpoint", tiny_checkpoint), message)
    assert_refused(invoke("bench", copy, "--checkpoint", tiny_checkpoint), message)


@pytest.mark.parametrize("size, message", [(1024, "manifest.json says target_size 1024, but encoder.onnx takes image of 512x512"),
                                           ("big", "is not valid: target_size: Input should be a valid integer")])
def test_an_edited_target_size_is_refused(tiny_artifacts, golden_image_path, tmp_path, size, message):
    copy = linked_copy(tiny_artifacts, tmp_path)
    edit_manifest(copy, target_size=size)
    out = tmp_path / "mask.png"
    assert_refused(invoke("predict", copy, "--image", golden_image_path, "--click", "5,5,positive", "--out", out), message)
    assert not out.exists()


def test_bench_refuses_the_same_directory_twice(tiny_artifacts, tiny_checkpoint):
    assert_refused(invoke("bench", tiny_artifacts, f"{tiny_artifacts}/", "--checkpoint", tiny_checkpoint),
                   f"artifact directory given more than once: {tiny_artifacts}")


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_negative_threads_are_refused_on_both_backends(tiny_artifacts, golden_image_path, tmp_path, backend):
    out = tmp_path / "mask.png"
    result = invoke("predict", tiny_artifacts, "--image", golden_image_path, "--click", "5,5,positive", "--out", out,
                    "--backend", backend, "--threads", "-3")
    assert_refused(result, "threads must be an integer from 1 to")
    assert not out.exists()


def test_predict_output_in_a_read_only_place_is_refused_first(tiny_artifacts, golden_image_path, read_only_dir):
    out = read_only_dir / "masks" / "mask.png"
    result = invoke("predict", tiny_artifacts, "--image", golden_image_path, "--click", "5,5,positive", "--out", out)
    assert_refused(result, f"--out {out.parent}: {read_only_dir} is not writable")


def test_internal_errors_are_one_line_with_exit_3_and_debug_shows_them(monkeypatch, tiny_artifacts, golden_image_path, tmp_path):
    import i2f_deploy.predict

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(i2f_deploy.predict, "predict", broken)
    args = ["predict", tiny_artifacts, "--image", golden_image_path, "--click", "5,5,positive", "--out", tmp_path / "m.png"]
    result = invoke(*args)
    assert result.exit_code == 3
    assert result.stderr.strip() == ("error: internal error (ZeroDivisionError: division by zero); "
                                     "rerun with --debug for the traceback")
    debug = invoke("--debug", *args)
    assert isinstance(debug.exception, ZeroDivisionError)


def test_a_missing_optional_dependency_names_the_extra(monkeypatch, tiny_artifacts, golden_image_path, tmp_path):
    import i2f_deploy.predict

    def without_torch(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    monkeypatch.setattr(i2f_deploy.predict, "predict", without_torch)
    result = invoke("predict", tiny_artifacts, "--image", golden_image_path, "--click", "5,5,positive", "--out", tmp_path / "m.png")
    assert_refused(result, "this command needs torch, which is not installed: pip install 'i2f-deploy[export]'")
