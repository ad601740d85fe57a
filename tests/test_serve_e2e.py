"""The real server: ``i2f-deploy serve`` in its own process on 127.0.0.1 with torch made
unimportable, driven over HTTP: upload, clicks, undo/redo, each adapter, bad inputs; the process
never tries to import torch. Also the CLI's own refusals."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from support.commands import assert_refused, assert_runs_without_torch
from support.images import b64, png_bytes
from support.servers import running_server
from typer.testing import CliRunner

from i2f_deploy.cli import app

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def image(golden_rgb: np.ndarray) -> np.ndarray:
    return golden_rgb


def test_real_server_without_torch(tiny_artifacts: Path, image: np.ndarray, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with running_server(tiny_artifacts, log, "--threads", "2", "--max-upload-mb", "1") as (url, process):
        with httpx.Client(base_url=url, timeout=60) as http:
            info = http.post("/api/images", files={"file": ("photo.png", png_bytes(image), "image/png")}).json()
            session = http.post("/api/sessions", json={"image_id": info["image_id"]}).json()
            path = f"/api/sessions/{session['session_id']}"
            first = http.post(f"{path}/clicks", json={"x": 200, "y": 200, "positive": True}).json()
            second = http.post(f"{path}/clicks", json={"x": 120, "y": 90, "positive": False}).json()
            assert first["mask"]["data"].startswith("data:image/png;base64,") and len(second["clicks"]) == 2
            undone = http.post(f"{path}/undo").json()
            assert undone["mask"] == first["mask"] and undone["can_redo"]
            assert http.post(f"{path}/redo").json()["mask"] == second["mask"]

            height, width = image.shape[:2]
            context = {"result": [{"original_width": width, "original_height": height, "type": "keypointlabels",
                                   "is_positive": True, "value": {"x": 33.3, "y": 50.0, "keypointlabels": ["Object"]},
                                   "from_name": "kp", "to_name": "image"}]}
            config = '<View><Image name="image" value="$image"/><BrushLabels name="brush" toName="image"/></View>'
            studio = http.post("/predict", json={"tasks": [{"data": {"image": "data:image/png;base64," + b64(image)}}],
                                                 "label_config": config, "params": {"context": context}})
            assert studio.status_code == 200 and studio.json()["results"][0]["result"][0]["type"] == "brushlabels"
            anylabeling = http.post("/v1/predict", json={"model": "inter2former", "image": b64(image),
                                                          "params": {"marks": [{"type": "point", "data": [200, 200], "label": 1}]}})
            assert anylabeling.json()["success"] and anylabeling.json()["data"]["shapes"]
            encoder_runs = http.get("/health").json()["encoder_runs"]
            for neg in ([], [[120, 90]]):
                cvat = http.post("/cvat/interactor", json={"image": b64(image), "pos_points": [[200, 200]], "neg_points": neg})
                assert cvat.status_code == 200 and np.array(cvat.json()["mask"]).shape == (height, width)
            assert http.get("/health").json()["encoder_runs"] == encoder_runs  # the same picture: no encoder run

            assert http.post("/api/images", files={"file": ("x.png", b"\0" * (2 << 20), "image/png")}).status_code == 413
            assert http.post("/api/images", files={"file": ("x.png", b"junk", "image/png")}).status_code == 422
            assert http.post("/api/sessions/nope/clicks", json={"x": 1, "y": 1}).status_code == 404
            assert http.post(f"{path}/clicks", json={"x": width, "y": 1}).status_code == 422
            assert http.post("/v1/predict", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
            assert http.get("/health").json()["status"] == "UP"  # still serving
        process.terminate()
        process.wait(30)
    output = log.read_text()
    assert "TORCH-BLOCKER-ACTIVE False" in output and "TORCH-IMPORT-ATTEMPT " not in output, output
    assert " 500 " not in output and "Traceback" not in output, output


def test_serve_imports_no_torch() -> None:
    assert_runs_without_torch("from i2f_deploy.serve.api import create_app\nfrom i2f_deploy.serve.cvat import main\n"
                              "from i2f_deploy import loadtest")


def test_serve_help_and_refusals(tmp_path: Path) -> None:
    runner = CliRunner()
    help_text = runner.invoke(app, ["serve", "--help"]).output
    for option in ("--host", "--port", "--backend", "--threads", "--cache-mb", "--max-upload-mb", "--graph-runs"):
        assert option in help_text
    assert_refused(runner.invoke(app, ["serve", str(tmp_path)]), "no manifest.json")
    assert_refused(runner.invoke(app, ["serve", str(tmp_path), "--cache-mb", "0"]), "--cache-mb / I2F_CACHE_MB must be at least 1, got 0")
