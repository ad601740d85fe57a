"""``i2f-deploy export`` refusals: one line on stderr, exit 2, nothing half-written."""

from __future__ import annotations

import pytest
from support.commands import assert_refused, leftovers
from typer.testing import CliRunner

from i2f_deploy.cli import app
from i2f_deploy.config import load_config

pytestmark = pytest.mark.graph

TINY = "inter2former-tiny-512"


def run_export(*args: str):
    return CliRunner().invoke(app, ["export", *args])


def test_missing_checkpoint(tmp_path):
    out = tmp_path / "art"
    assert_refused(run_export("-c", TINY, "--checkpoint", str(tmp_path / "none.pth"), "--out", str(out)), "checkpoint not found")
    assert not out.exists() and leftovers(tmp_path) == []


def test_checkpoint_of_another_config(tmp_path, tiny_checkpoint):
    out = tmp_path / "art"
    result = run_export("-c", "inter2former-base-1024", "--checkpoint", str(tiny_checkpoint), "--out", str(out))
    assert_refused(result, "does not fit the configured model")
    assert not out.exists() and leftovers(tmp_path) == []


def test_non_empty_out_needs_force(tmp_path, tiny_checkpoint):
    out = tmp_path / "art"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    assert_refused(run_export("-c", TINY, "--checkpoint", str(tiny_checkpoint), "--out", str(out)), "--force")
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and leftovers(tmp_path) == []


def test_force_replaces_only_artifact_directories(tmp_path, tiny_checkpoint):
    out = tmp_path / "documents"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    result = run_export("-c", TINY, "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--force")
    assert_refused(result, "replaces only artifact directories")
    assert (out / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-c", TINY], "exactly one of --checkpoint PATH or --random-weights"),
        (["-c", "no-such-config", "--random-weights"], "unknown config 'no-such-config'"),
    ],
)
def test_bad_arguments(tmp_path, args, message):
    assert_refused(run_export(*args, "--out", str(tmp_path / "art")), message)


def test_choices_are_listed_and_enforced_by_the_parser(tmp_path):
    assert "--routing <dynamic|dense>" in CliRunner().invoke(app, ["export", "--help"]).output
    result = run_export("-c", TINY, "--random-weights", "--routing", "sparse", "--out", str(tmp_path / "art"))
    assert result.exit_code == 2 and "Invalid value for '--routing'" in result.stderr
    assert not (tmp_path / "art").exists()


def test_version():
    from i2f_deploy import __version__

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output == f"i2f-deploy {__version__}\n"


def test_failure_midway_leaves_nothing(tmp_path, tiny_checkpoint, monkeypatch):
    import i2f_deploy.export.exporter as exporter

    def broken(*_args, **_kwargs):
        raise RuntimeError("simulated crash during the decoder export")

    monkeypatch.setattr(exporter, "export_decoder", broken)
    out = tmp_path / "art"
    with pytest.raises(RuntimeError):
        exporter.export_artifacts(load_config(TINY), out, exporter.ExportOptions(), print, checkpoint=tiny_checkpoint)
    assert not out.exists() and leftovers(tmp_path) == []
