"""A fixed click script over every face of the server, recorded as JSON: what a refactor of the
serving path must leave byte-identical.

The script drives the app in process (FastAPI's TestClient on one engine): images, a native
session (positive and negative clicks, undo, redo, reset, each mask format, polygons, the mask
download, the errors of unknown ids and clicks off the image), Label Studio's ``/setup`` and
``/predict``, X-AnyLabeling's ``/v1`` routes and CVAT's interactor. Each answer is kept with what
varies from run to run taken out: the milliseconds of ``timings`` (its ``decoder_runs`` count
stays), random ids (session ids, Label Studio result ids) and the health timestamp.

    python tests/support/click_script.py ARTIFACT_DIR IMAGE OUT.json [--backend openvino]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from fastapi.testclient import TestClient

from i2f_deploy.serve.api import create_app
from i2f_deploy.serve.config import ServeConfig
from i2f_deploy.serve.core import Engine

LABEL_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="brush" toName="image"><Label value="Object"/></BrushLabels>
  <PolygonLabels name="poly" toName="image"><Label value="Object"/></PolygonLabels>
  <KeyPointLabels name="kp" toName="image" smart="true"><Label value="Object"/></KeyPointLabels>
</View>"""


def _png(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def _scrub(value: Any) -> Any:
    """The answer without what varies between runs (see the module docstring)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "timings" and isinstance(item, dict):
                out[key] = {k: v for k, v in item.items() if not k.endswith("_ms")}
            elif key in ("session_id", "timestamp") or (key == "id" and isinstance(item, str)):
                out[key] = f"<{key}>"
            else:
                out[key] = _scrub(item)
        return out
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    return value


class Recorder:
    """Sends requests and keeps each answer: status, content type and body (JSON scrubbed, other
    bodies by their SHA-256)."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.answers: list[dict[str, Any]] = []
        self.session_id = ""  # replaced in the paths recorded

    def __call__(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, path, **kwargs)
        kind = response.headers.get("content-type", "")
        body: Any
        if kind.startswith("application/json"):
            body = _scrub(response.json())
        else:
            body = {"sha256": hashlib.sha256(response.content).hexdigest(), "bytes": len(response.content)}
        answer = {"request": f"{method} {path}", "status": response.status_code, "type": kind, "body": body}
        if self.session_id:  # in paths and messages too
            answer = json.loads(json.dumps(answer).replace(self.session_id, "<session_id>"))
        self.answers.append(answer)
        return response.json() if kind.startswith("application/json") else response.content


def run_script(client: TestClient, rgb: np.ndarray) -> list[dict[str, Any]]:
    """The script on ``rgb`` (at least 400 x 300 pixels); the answers in order."""
    send = Recorder(client)
    png = _png(rgb)
    data_uri = "data:image/png;base64," + base64.b64encode(png).decode()
    height, width = rgb.shape[:2]

    # images and a native session
    image_id = send("POST", "/api/images", files={"file": ("image.png", png, "image/png")})["image_id"]
    session = send.session_id = send("POST", "/api/sessions", json={"image_id": image_id})["session_id"]
    send("POST", "/api/images/base64", json={"image": data_uri})
    send("GET", f"/api/images/{image_id}")
    send("GET", "/api/images/unknown")
    path = f"/api/sessions/{session}"
    send("POST", f"{path}/clicks", json={"x": 200, "y": 200, "positive": True})
    send("POST", f"{path}/clicks?mask=rle", json={"x": 120, "y": 90, "positive": False})
    send("POST", f"{path}/clicks?mask=none", json={"x": 330, "y": 250})
    send("POST", f"{path}/clicks", json={"x": width, "y": 10, "positive": True})  # off the image: 422
    send("POST", f"{path}/undo?mask=rle")
    send("POST", f"{path}/undo")
    send("POST", f"{path}/redo?polygons=false")
    send("POST", f"{path}/redo")
    send("POST", f"{path}/redo")  # nothing left to redo
    send("POST", f"{path}/undo")
    send("POST", f"{path}/clicks", json={"x": 60, "y": height - 40, "positive": False})  # clears the redo
    send("GET", f"{path}?mask=rle&polygons=true")
    send("GET", f"{path}/mask.png")
    send("POST", f"{path}/reset")
    send("POST", f"{path}/undo")  # nothing to undo
    send("GET", f"{path}/mask.png")
    send("DELETE", path)
    send("GET", path)
    send("POST", "/api/sessions/unknown/clicks", json={"x": 1, "y": 1, "positive": True})

    # Label Studio
    send("POST", "/setup", json={"project": "1.1", "schema": LABEL_CONFIG, "extra_params": None})
    points = []
    for index, (x, y, positive) in enumerate([(50.0, 50.0, True), (20.0, 22.5, False), (80.0, 60.0, True)]):
        points.append({"id": f"k{index}", "type": "keypointlabels", "from_name": "kp", "to_name": "image",
                       "original_width": width, "original_height": height, "is_positive": positive,
                       "value": {"x": x, "y": y, "width": 0.5, "keypointlabels": ["Object"]}})
        send("POST", "/predict", json={"tasks": [{"id": 1, "data": {"image": data_uri}}], "label_config": LABEL_CONFIG,
                                       "params": {"context": {"result": list(points)}}})

    # X-AnyLabeling
    send("GET", "/v1/models")
    send("GET", "/v1/models/inter2former/info")
    marks = [{"type": "point", "data": [210, 190], "label": 1}]
    send("POST", "/v1/predict", json={"model": "inter2former", "image": data_uri, "params": {"marks": marks}})
    marks.append({"type": "point", "data": [100.5, 80.25], "label": 0})
    send("POST", "/v1/predict", json={"model": "inter2former", "image": data_uri,
                                      "params": {"marks": marks, "epsilon_factor": 0.01}})
    send("POST", "/v1/predict", json={"model": "inter2former", "image": data_uri, "params": {"marks": marks,
                                                                                            "epsilon_factor": 0}})
    send("POST", "/v1/predict", json={"model": "other", "image": data_uri, "params": {"marks": marks}})

    # CVAT
    frame = base64.b64encode(png).decode()
    send("POST", "/cvat/interactor", json={"image": frame, "pos_points": [[190, 210]], "neg_points": []})
    send("POST", "/cvat/interactor", json={"image": frame, "pos_points": [[190, 210]], "neg_points": [[90.5, 70]]})
    send("POST", "/cvat/interactor", json={"image": frame, "pos_points": [[190, 210], [300, 240]],
                                           "neg_points": [[90.5, 70]]})
    send("POST", "/cvat/interactor", json={"image": frame, "pos_points": [], "neg_points": []})

    send("GET", "/health")
    return send.answers


def record(artifact_dir: Path, rgb: np.ndarray, backend: str = "onnxruntime") -> bytes:
    """The script's answers on a fresh one-thread engine over ``artifact_dir``, as JSON bytes."""
    engine = Engine(ServeConfig(artifact_dir=Path(artifact_dir), backend=backend, threads=1))
    try:
        answers = run_script(TestClient(create_app(engine)), rgb)
    finally:
        engine.close()
    return json.dumps(answers, indent=1, sort_keys=True).encode() + b"\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifact_dir", type=Path)
    parser.add_argument("image", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--backend", default="onnxruntime")
    args = parser.parse_args()
    rgb = cv2.cvtColor(cv2.imread(str(args.image)), cv2.COLOR_BGR2RGB)
    args.out.write_bytes(record(args.artifact_dir, rgb, args.backend))


if __name__ == "__main__":
    main()
