"""A real Label Studio (1.23, its own virtual environment: ``.ci/annotation-tools.sh``) on 127.0.0.1
with the real server as its ML backend, connected through ``POST /api/ml``: an image imported into
a project (task URL ``/data/upload/...``), a smart keypoint sent as its front end sends it
(``POST /api/ml/{id}/interactive-annotating``) with a personal access token and with a legacy
token, the brush RLE decoded by ``label_studio_sdk``'s converter and compared with the native API's
mask, the answer saved as an annotation and read back; Label Studio's webhook acknowledged and a
smart rectangle refused with a 4xx (Label Studio shows its status line)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from support.annotation_tools import tool_venv
from support.servers import free_port, running_server

pytestmark = pytest.mark.system

LEGACY_TOKEN = "i2f-legacy-token-" + "z" * 16
LABEL_CONFIG = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <BrushLabels name="mask" toName="image"><Label value="Object"/></BrushLabels>
  <KeyPointLabels name="click" toName="image" smart="true"><Label value="Object" smart="true"/></KeyPointLabels>
  <RectangleLabels name="box" toName="image" smart="true"><Label value="Object"/></RectangleLabels>
</View>"""
# Label Studio's own decoder: the brush RLE -> the mask's alpha channel
DECODE = """
import json, sys
import numpy as np
from label_studio_sdk.converter.brush import decode_rle
result = json.load(open(sys.argv[1]))
rgba = decode_rle(result["value"]["rle"]).reshape(result["original_height"], result["original_width"], 4)
np.save(sys.argv[2], rgba[:, :, 3] > 0)
"""


@dataclass
class Studio:
    url: str
    venv: Path
    log: Path

    def client(self, token: str, personal: bool = False) -> httpx.Client:
        """A client of its API with a legacy token, or with an access token for a personal access token."""
        if personal:
            access = httpx.post(f"{self.url}/api/token/refresh/", json={"refresh": token}, timeout=60)
            assert access.status_code == 200, access.text
            authorization = f"Bearer {access.json()['access']}"
        else:
            authorization = f"Token {token}"
        return httpx.Client(base_url=self.url, timeout=120, headers={"Authorization": authorization})


@contextlib.contextmanager
def label_studio_running(venv: Path, data: Path) -> Iterator[Studio]:
    """``label-studio start`` on 127.0.0.1 with a fresh database; its switches for a backend on
    loopback (``ML_BLOCK_LOCAL_IP``: the model URL; ``SSRF_PROTECTION_ENABLED``: the webhook Label
    Studio registers at it), no calls outside the machine, legacy tokens enabled for the user's."""
    port = free_port()
    env = {"PATH": os.environ["PATH"], "HOME": str(data), "LABEL_STUDIO_BASE_DATA_DIR": str(data),
           "ML_BLOCK_LOCAL_IP": "false", "SSRF_PROTECTION_ENABLED": "false",
           "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false"}
    command = [str(venv / "bin" / "label-studio"), "start", "--no-browser", "--internal-host", "127.0.0.1",
               "--port", str(port), "--data-dir", str(data), "--username", "annotator@example.com",
               "--password", "annotator-password", "--user-token", LEGACY_TOKEN, "--enable-legacy-api-token"]
    log = data / "label-studio.log"
    with open(log, "w") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    studio = Studio(f"http://127.0.0.1:{port}", venv, log)
    try:
        deadline = time.monotonic() + 600  # the first start migrates the database
        while True:
            assert process.poll() is None, log.read_text()[-5000:]
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{studio.url}/health", timeout=5).status_code == 200:
                    break
            assert time.monotonic() < deadline, "Label Studio did not start:\n" + log.read_text()[-5000:]
            time.sleep(1)
        yield studio
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # its own process group, started above
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)


@pytest.fixture(scope="session")
def label_studio_venv() -> Path:
    """Label Studio's environment, looked up before the session's export (a skip costs nothing)."""
    return tool_venv("label-studio")


@pytest.fixture(scope="module")
def studio(label_studio_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    with label_studio_running(label_studio_venv, tmp_path_factory.mktemp("label-studio")) as running:
        yield running


@pytest.fixture(scope="module")
def personal_access_token(studio: Studio) -> str:
    """The user's personal access token (Account & Settings → Personal Access Token)."""
    with studio.client(LEGACY_TOKEN) as client:
        created = client.post("/api/token/")
    assert created.status_code == 201, created.text
    return created.json()["token"]


def decode_brush(studio: Studio, result: dict, folder: Path) -> np.ndarray:
    """A ``brushlabels`` result's mask, decoded by Label Studio's SDK in its own environment."""
    (folder / "result.json").write_text(json.dumps(result))
    subprocess.run([str(studio.venv / "bin" / "python"), "-c", DECODE, str(folder / "result.json"),
                    str(folder / "mask.npy")], check=True, timeout=120)
    return np.load(folder / "mask.npy")


def native_mask(url: str, image_file: bytes, x: int, y: int) -> np.ndarray:
    with httpx.Client(base_url=url, timeout=120) as http:
        image_id = http.post("/api/images", files={"file": ("photo.png", image_file, "image/png")}).json()["image_id"]
        session = http.post("/api/sessions?mask=none", json={"image_id": image_id}).json()["session_id"]
        answer = http.post(f"/api/sessions/{session}/clicks", json={"x": x, "y": y, "positive": True}).json()
    png = np.frombuffer(base64.b64decode(answer["mask"]["data"].split(",", 1)[1]), np.uint8)
    return cv2.imdecode(png, cv2.IMREAD_GRAYSCALE) > 0


@pytest.mark.parametrize("kind", ["personal access token", "legacy token"])
def test_label_studio_interactive_click_to_saved_annotation(label_studio_venv: Path, kind: str, studio: Studio,
                                                             personal_access_token: str, tiny_artifacts: Path,
                                                             golden_image_path: Path, tmp_path: Path) -> None:
    personal = kind == "personal access token"
    token = personal_access_token if personal else LEGACY_TOKEN
    image_file = golden_image_path.read_bytes()
    height, width = cv2.imread(str(golden_image_path)).shape[:2]
    x, y = 200, 150  # the pixel clicked; Label Studio sends its centre in percent
    keypoint = {"id": "k1", "type": "keypointlabels", "from_name": "click", "to_name": "image", "origin": "manual",
                "original_width": width, "original_height": height, "image_rotation": 0, "is_positive": True,
                "value": {"x": 100 * (x + 0.5) / width, "y": 100 * (y + 0.5) / height, "width": 0.5,
                          "keypointlabels": ["Object"]}}
    box = {"id": "r1", "type": "rectanglelabels", "from_name": "box", "to_name": "image", "origin": "manual",
           "original_width": width, "original_height": height, "image_rotation": 0,
           "value": {"x": 20, "y": 20, "width": 40, "height": 40, "rotation": 0, "rectanglelabels": ["Object"]}}
    log = tmp_path / "server.log"
    with pytest.MonkeyPatch.context() as patch, studio.client(token, personal) as ls:
        patch.setenv("LABEL_STUDIO_API_KEY", token)
        with running_server(tiny_artifacts, log, "--threads", "2", "--label-studio-url", studio.url) as (url, _):
            project = ls.post("/api/projects", json={"title": f"i2f {kind}", "label_config": LABEL_CONFIG})
            assert project.status_code == 201, project.text
            project_id = project.json()["id"]
            imported = ls.post(f"/api/projects/{project_id}/import", files={"file": ("photo.png", image_file, "image/png")})
            assert imported.status_code == 201, imported.text
            task = ls.get("/api/tasks", params={"project": project_id}).json()["tasks"][0]
            assert task["data"]["image"].startswith("/data/upload/"), task["data"]
            backend = ls.post("/api/ml", json={"project": project_id, "url": url, "title": "Inter2Former",
                                               "is_interactive": True})
            assert backend.status_code == 201 and backend.json()["readable_state"] == "Connected", backend.text

            def interactive(result: list[dict]) -> dict:
                response = ls.post(f"/api/ml/{backend.json()['id']}/interactive-annotating",
                                   json={"task": task["id"], "context": {"result": result}})
                assert response.status_code == 200, response.text
                return response.json()

            answer = interactive([keypoint])
            assert "errors" not in answer, answer
            brush = next(r for r in answer["data"]["result"] if r["type"] == "brushlabels")
            expected = native_mask(url, image_file, x, y)
            assert expected.any() and (decode_brush(studio, brush, tmp_path) == expected).all()

            saved = ls.post(f"/api/tasks/{task['id']}/annotations", json={"result": answer["data"]["result"]})
            assert saved.status_code == 201, saved.text
            read_back = ls.get(f"/api/annotations/{saved.json()['id']}").json()["result"]
            brush_back = next(r for r in read_back if r["type"] == "brushlabels")
            assert (decode_brush(studio, brush_back, tmp_path) == expected).all()

            refused = interactive([box])  # Label Studio shows the annotator the status line of the 4xx
            assert refused["errors"][0].startswith("422 Client Error"), refused
    lines = [json.loads(line.split(": ", 1)[1]) for line in log.read_text().splitlines() if line.startswith("INFO: {")]
    routes = [(line["route"], line["status"]) for line in lines]
    assert ("/webhook", 200) in routes  # the event of the saved annotation
    assert ("/predict", 422) in routes and all(status < 500 for _, status in routes), routes


# Label Studio's own decoder on many masks at once: each RLE -> its alpha channel, as 0/1 bytes
DECODE_MANY = """
import json, sys
import numpy as np
from label_studio_sdk.converter.brush import decode_rle
for case in json.load(open(sys.argv[1])):
    rgba = decode_rle(case["rle"]).reshape(case["height"], case["width"], 4)
    sys.stdout.write("".join("1" if v else "0" for v in (rgba[:, :, 3] > 0).reshape(-1)) + "\\n")
"""


def test_label_studio_sdk_decodes_our_brush_rle_to_the_mask(label_studio_venv: Path, tmp_path: Path) -> None:
    """Our encoder against Label Studio's decoder (an independent implementation of the format):
    random masks of many shapes, empty and full ones, and runs longer than the widest field."""
    from i2f_deploy.serve.adapters.brush_rle import mask_to_rle

    rng = np.random.default_rng(0)
    masks = [rng.random((int(rng.integers(1, 60)), int(rng.integers(1, 60)))) < rng.random() for _ in range(40)]
    masks += [np.zeros((7, 5), bool), np.ones((5, 7), bool), np.zeros((300, 400), bool)]
    masks[-1][-1, -1] = True  # 480 000 equal values before it: several 2**16 chunks
    cases = [{"rle": mask_to_rle(m), "height": m.shape[0], "width": m.shape[1]} for m in masks]
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    decoded = subprocess.run([str(label_studio_venv / "bin" / "python"), "-c", DECODE_MANY, str(tmp_path / "cases.json")],
                             capture_output=True, text=True, check=True, timeout=300).stdout.splitlines()
    assert len(decoded) == len(masks)
    for mask, bits in zip(masks, decoded):
        assert bits == "".join("1" if v else "0" for v in mask.reshape(-1))
