"""X-AnyLabeling 4.2.1's own remote-server client (its ``RemoteServer`` model, in its own virtual
environment: ``.ci/annotation-tools.sh``; Qt offscreen) against the real server, set up as
docs/x-anylabeling.md says: ``remote_server_settings`` in ``~/.xanylabelingrc`` (X-AnyLabeling reads no
environment variable for it: its packaged defaults always carry a ``server_url``). Point marks come
back as the native API's polygons; a rectangle mark gets the 4xx the client shows."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest
from support.annotation_tools import tool_venv
from support.images import png_bytes, read_rgb
from support.servers import running_server

pytestmark = pytest.mark.system

TOKEN = "xanylabeling-token-" + "q" * 12
# What X-AnyLabeling's start-up and model loading do for the Remote-Server model (app.py,
# services/auto_labeling/model_manager.py), then its calls on a click: argv = work dir, image, marks
CLIENT = """
import json, sys
from PyQt6.QtGui import QImage
from PyQt6.QtWidgets import QApplication
app = QApplication(["xanylabeling"])
from importlib import resources
from anylabeling import config, configs
from anylabeling.services.auto_labeling.model import load_model_config
from anylabeling.services.auto_labeling.remote_server import RemoteServer
work_dir, image_path, marks = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
config.set_work_directory(work_dir)
config.current_config_file = work_dir + "/.xanylabelingrc"
model_config = load_model_config(resources.files(configs).joinpath("auto_labeling", "remote_server.yaml").read_text())
messages = []
model = RemoteServer(model_config, on_message=messages.append)
models = model.get_available_models()
model.set_model_id("inter2former")
model.set_mask_fineness(0.0)  # the client's mask fineness slider at its finest
model.set_auto_labeling_marks(marks)
result = model.predict_shapes(QImage(image_path), image_path)
shapes = [{"shape_type": s.shape_type, "points": [[p.x(), p.y()] for p in s.points]} for s in result.shapes]
print(json.dumps({"server_url": model.server_url, "models": sorted(models), "shapes": shapes, "messages": messages}))
"""


def run_client(venv: Path, work_dir: Path, image_path: Path, marks: list[dict]) -> dict:
    env = {"PATH": os.environ["PATH"], "HOME": str(work_dir), "QT_QPA_PLATFORM": "offscreen",
           "XANYLABELING_SERVER_URL": "http://127.0.0.1:9"}  # ignored by 4.2.1: the rc file's URL is used
    done = subprocess.run([str(venv / "bin" / "python"), "-c", CLIENT, str(work_dir), str(image_path), json.dumps(marks)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-5000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def xanylabeling_venv() -> Path:
    """X-AnyLabeling's environment, looked up before the session's export (a skip costs nothing)."""
    return tool_venv("x-anylabeling")


def test_xanylabeling_remote_server_client(xanylabeling_venv: Path, tiny_artifacts: Path, golden_image_path: Path,
                                           tmp_path: Path) -> None:
    image_path = tmp_path / "photo.png"
    image_path.write_bytes(png_bytes(read_rgb(golden_image_path)))
    with running_server(tiny_artifacts, tmp_path / "server.log", "--threads", "2", "--token", TOKEN) as (url, _):
        (tmp_path / ".xanylabelingrc").write_text(f"remote_server_settings:\n  server_url: {url}\n  api_key: {TOKEN}\n")
        points = [{"type": "point", "data": [200, 150], "label": 1}, {"type": "point", "data": [120, 90], "label": 0}]
        answer = run_client(xanylabeling_venv, tmp_path, image_path, points)
        assert answer["server_url"] == url and answer["models"] == ["inter2former"] and not answer["messages"], answer
        with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            image_id = http.post("/api/images", files={"file": ("photo.png", image_path.read_bytes(), "image/png")}).json()["image_id"]
            session = http.post("/api/sessions?mask=none", json={"image_id": image_id}).json()["session_id"]
            for mark in points:
                clicked = http.post(f"/api/sessions/{session}/clicks?mask=none",
                                    json={"x": mark["data"][0], "y": mark["data"][1], "positive": bool(mark["label"])})
            native = clicked.json()["polygons"]
        assert native and [s["shape_type"] for s in answer["shapes"]] == ["polygon"] * len(native)
        assert [s["points"] for s in answer["shapes"]] == native  # its Shape closes on the repeated first point

        box = run_client(xanylabeling_venv, tmp_path, image_path, [{"type": "rectangle", "data": [50, 50, 300, 250], "label": 1}])
    assert box["shapes"] == [] and len(box["messages"]) == 1
    assert box["messages"][0].startswith("Remote server error: 422 Client Error"), box
