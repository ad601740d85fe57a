"""A bounded run of ``i2f-deploy loadtest`` on the tiny export: a few simulated users on loopback,
no errors, the encoder once per image, memory within the cache budget plus slack. Latency is
reported, not asserted. Bad settings are refused in one line before any server starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.commands import assert_refused
from typer.testing import CliRunner

from i2f_deploy.cli import app

pytestmark = pytest.mark.system


def test_bounded_load(tiny_artifacts: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "load.json"
    command = [sys.executable, "-m", "i2f_deploy.cli", "loadtest", str(tiny_artifacts), "--users", "2", "--images", "2",
               "--clicks", "4", "--threads", "1", "--cache-mb", "64", "--max-seconds", "240", "--json", str(report_path),
               "--server-log", str(tmp_path / "server.log")]
    process = subprocess.run(command, capture_output=True, text=True, timeout=400)
    assert process.returncode == 0, process.stdout + process.stderr + (tmp_path / "server.log").read_text()
    report = json.loads(report_path.read_text())
    assert json.loads(process.stdout) == report
    assert report["error_count"] == 0 and report["clicks"] == 2 * 2 * 4
    assert report["encoder_runs"] == 2  # every user posts both images: one encoder run each
    assert report["rss_mb"]["growth"] <= 64 + report["rss_mb"]["slack"]
    assert report["click_ms"]["p50"] > 0


@pytest.mark.parametrize(("options", "message"), [
    (["--users", "0"], "--users must be at least 1, got 0"),
    (["--max-seconds", "inf"], "--max-seconds must be finite, got inf"),
    (["--ray", "-1"], "--ray must be at least 0, got -1"),
])
def test_bad_settings_are_refused_by_name(tiny_artifacts: Path, options: list[str], message: str) -> None:
    assert_refused(CliRunner().invoke(app, ["loadtest", str(tiny_artifacts), *options]), message)


def test_a_directory_without_an_export_is_refused(tmp_path: Path) -> None:
    assert_refused(CliRunner().invoke(app, ["loadtest", str(tmp_path)]), "no manifest.json")
    assert_refused(CliRunner().invoke(app, ["loadtest", str(tmp_path), "--json", str(tmp_path / "no" / "r.json")]),
                   "--json")


def test_help_shows_the_defaults() -> None:
    text = " ".join(CliRunner().invoke(app, ["loadtest", "--help"]).output.split())
    assert "Simulated people clicking at once. [default: 4]" in text and "--ray N" in text and "--json FILE" in text
