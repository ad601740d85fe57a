"""A bounded run of the load test (``python -m i2f_deploy.serve.loadtest``) on the tiny export:
a few simulated users on loopback, no errors, the encoder once per image, memory within the cache
budget plus slack. Latency is reported, not asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_bounded_load(tiny_artifacts: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "load.json"
    command = [sys.executable, "-m", "i2f_deploy.serve.loadtest", str(tiny_artifacts), "--users", "2", "--images", "2",
               "--clicks", "4", "--threads", "1", "--cache-mb", "64", "--max-seconds", "240", "--json", str(report_path),
               "--server-log", str(tmp_path / "server.log")]
    process = subprocess.run(command, capture_output=True, text=True, timeout=400)
    assert process.returncode == 0, process.stdout + process.stderr + (tmp_path / "server.log").read_text()
    report = json.loads(report_path.read_text())
    assert report["error_count"] == 0 and report["clicks"] == 2 * 2 * 4
    assert report["encoder_runs"] == 2  # every user posts both images: one encoder run each
    assert report["rss_mb"]["growth"] <= 64 + report["rss_mb"]["slack"]
    assert report["click_ms"]["p50"] > 0
