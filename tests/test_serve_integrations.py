"""The annotation tools' integration, on the real server (``i2f-deploy serve`` on 127.0.0.1) with a
loopback stand-in for Label Studio's token and file endpoints: personal access tokens exchanged
and refreshed before they expire, prompts the model cannot take refused with the reason,
``/webhook`` acknowledged, no query string in the log, and one pixel convention for every adapter."""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from support.images import b64, png_bytes
from support.servers import LoopbackServer, QuietHandler, running_server

from i2f_deploy.serve.adapters.brush_rle import mask_to_rle

pytestmark = pytest.mark.system

TOKEN = "integration-token-" + "y" * 12
SIGNATURE = "X-Signature=s3cretsignature"
LABEL_CONFIG = ('<View><Image name="image" value="$image"/><BrushLabels name="brush" toName="image"/>'
                '<KeyPointLabels name="kp" toName="image" smart="true"/>'
                '<RectangleLabels name="box" toName="image" smart="true"/></View>')


def jwt(claims: dict) -> str:
    """A JWT with a dummy signature: the server only reads its claims, the stand-in checks it."""
    header, payload = (base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
                       for part in ({"alg": "HS256", "typ": "JWT"}, claims))
    return f"{header}.{payload}.c2ln"


PERSONAL_TOKEN = jwt({"token_type": "refresh", "exp": 8_000_000_000, "iat": 1_700_000_000, "jti": "a1", "user_id": "1"})
REVOKED_TOKEN = jwt({"token_type": "refresh", "exp": 8_000_000_000, "iat": 1_700_000_000, "jti": "b2", "user_id": "1"})


class FakeLabelStudio(LoopbackServer):
    """Label Studio's token refresh (``POST /api/token/refresh/``) and its file serving, which
    answers 401 unless the request carries an access token it issued and that has not expired."""

    def __init__(self, image: bytes, access_lifetime_s: float) -> None:
        self.image = image
        self.access_lifetime_s = access_lifetime_s
        self.issued: dict[str, float] = {}  # access token -> expiry
        self.exchanges: list[str] = []  # refresh tokens presented
        self.fetches: list[tuple[str, int]] = []  # (path with query, status answered)
        studio = self

        class Handler(QuietHandler):
            def answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send(status, {"Content-Type": kind}, body)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/api/token/refresh/" or self.headers.get("Content-Type") != "application/json":
                    return self.answer(404, b"{}")
                studio.exchanges.append(body.get("refresh"))
                if body.get("refresh") != PERSONAL_TOKEN:
                    return self.answer(401, json.dumps({"detail": "Token is blacklisted", "code": "token_not_valid"}).encode())
                expiry = time.time() + studio.access_lifetime_s
                access = jwt({"token_type": "access", "exp": int(expiry), "jti": str(len(studio.issued))})
                studio.issued[access] = int(expiry)
                self.answer(200, json.dumps({"access": access}).encode())

            def do_GET(self) -> None:
                scheme, _, access = (self.headers.get("Authorization") or "").partition(" ")
                valid = scheme == "Bearer" and studio.issued.get(access, 0) > time.time()
                status = 200 if valid and urllib.parse.urlsplit(self.path).path == "/data/upload/1/photo.png" else 401
                studio.fetches.append((self.path, status))
                self.answer(status, studio.image if status == 200 else b'{"detail": "no"}', "image/png")

        super().__init__(Handler)


@pytest.fixture(scope="module")
def image(golden_rgb: np.ndarray) -> np.ndarray:
    return golden_rgb


@pytest.fixture(scope="module")
def studio(image: np.ndarray) -> Iterator[FakeLabelStudio]:
    fake = FakeLabelStudio(png_bytes(image), access_lifetime_s=45)  # refreshed once 30 s or less are left
    yield fake
    fake.shutdown()


@pytest.fixture(scope="module")
def served(tiny_artifacts: Path, studio: FakeLabelStudio, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The real server with a token, Label Studio's address and a personal access token; (URL, log)."""
    log = tmp_path_factory.mktemp("integrations") / "server.log"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LABEL_STUDIO_API_KEY", PERSONAL_TOKEN)
        with running_server(tiny_artifacts, log, "--threads", "2", "--token", TOKEN,
                            "--label-studio-url", studio.url) as (url, _):
            yield url, log


@pytest.fixture()
def http(served: tuple[str, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[0], timeout=60, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def keypoint(x_percent: float, y_percent: float, width: int, height: int) -> dict:
    return {"type": "keypointlabels", "is_positive": True, "original_width": width, "original_height": height,
            "value": {"x": x_percent, "y": y_percent, "width": 0.5, "keypointlabels": ["Object"]},
            "from_name": "kp", "to_name": "image", "id": "k1", "origin": "manual"}


def studio_predict(http: httpx.Client, ref: str, results: list[dict]) -> httpx.Response:
    return http.post("/predict", json={"tasks": [{"id": 1, "data": {"image": ref}}], "label_config": LABEL_CONFIG,
                                       "project": "1.1", "params": {"context": {"result": results}}})


def test_personal_access_token_is_exchanged_and_refreshed_before_it_expires(
        http: httpx.Client, image: np.ndarray, studio: FakeLabelStudio, tiny_artifacts: Path, tmp_path: Path) -> None:
    height, width = image.shape[:2]
    click = [keypoint(50, 50, width, height)]
    http.post("/api/images/base64", json={"image": b64(image)})  # encoded ahead: the requests below take no encoder time
    first = studio_predict(http, "/data/upload/1/photo.png", click)
    assert first.status_code == 200, first.text
    second = studio_predict(http, "/data/upload/1/photo.png", click)
    assert second.status_code == 200 and studio.exchanges == [PERSONAL_TOKEN]  # the access token is reused (15 s left)
    time.sleep(max(0.0, min(studio.issued.values()) - 30 - time.time()) + 0.5)  # now within 30 s of its expiry
    third = studio_predict(http, "/data/upload/1/photo.png", click)
    assert third.status_code == 200 and studio.exchanges == [PERSONAL_TOKEN] * 2
    assert [status for _, status in studio.fetches] == [200, 200, 200]  # never an expired or a refresh token

    with pytest.MonkeyPatch.context() as patch:  # a token Label Studio refuses: the reason, in a 424
        patch.setenv("LABEL_STUDIO_API_KEY", REVOKED_TOKEN)
        with running_server(tiny_artifacts, tmp_path / "revoked.log", "--label-studio-url", studio.url) as (url, _):
            refused = httpx.post(f"{url}/predict", timeout=60, json={
                "tasks": [{"data": {"image": "/data/upload/1/photo.png"}}], "label_config": LABEL_CONFIG,
                "params": {"context": {"result": click}}})
    assert refused.status_code == 424
    detail = refused.json()["detail"]
    assert "personal access token" in detail and "HTTP 401 (Token is blacklisted)" in detail, detail


def test_prompts_the_model_cannot_take_are_refused_with_the_reason(http: httpx.Client, image: np.ndarray) -> None:
    height, width = image.shape[:2]
    box = {"type": "rectanglelabels", "original_width": width, "original_height": height, "from_name": "box",
           "to_name": "image", "id": "r1", "value": {"x": 20, "y": 20, "width": 40, "height": 40, "rotation": 0,
                                                     "rectanglelabels": ["Object"]}}
    studio = studio_predict(http, "data:image/png;base64," + b64(image), [box])
    assert studio.status_code == 422
    assert studio.json()["detail"].startswith("Inter2Former takes clicks only, not a rectanglelabels prompt: click")
    marks = [{"type": "rectangle", "data": [10, 10, 200, 200], "label": 1}]
    anylabeling = http.post("/v1/predict", json={"model": "inter2former", "image": b64(image), "params": {"marks": marks}})
    assert anylabeling.status_code == 422 and not anylabeling.json()["success"]
    assert anylabeling.json()["error"]["message"].startswith("Inter2Former takes clicks only, not a rectangle prompt")


def test_webhook_is_acknowledged_without_credentials(served: tuple[str, Path]) -> None:
    event = {"action": "ANNOTATION_CREATED", "annotation": {"id": 1, "result": []}, "project": {"id": 1}}
    response = httpx.post(f"{served[0]}/webhook", json=event, timeout=30)  # Label Studio sends no credentials
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_no_query_string_in_the_log(http: httpx.Client, image: np.ndarray, served: tuple[str, Path],
                                    studio: FakeLabelStudio) -> None:
    height, width = image.shape[:2]
    response = studio_predict(http, f"/data/upload/1/photo.png?{SIGNATURE}", [keypoint(50, 50, width, height)])
    assert response.status_code == 200, response.text
    assert studio.fetches[-1] == (f"/data/upload/1/photo.png?{SIGNATURE}", 200)  # the query did reach Label Studio
    log = served[1].read_text()
    assert "s3cretsignature" not in log and "?" not in log, log


def test_one_pixel_convention_for_every_adapter(http: httpx.Client, image: np.ndarray) -> None:
    """A tool's point on the right or bottom edge (x == width, Label Studio's 100 %) is the last
    pixel, as the native click on it; beyond the edge is refused, by every adapter alike."""
    height, width = image.shape[:2]
    image_id = http.post("/api/images/base64", json={"image": b64(image)}).json()["image_id"]
    session = http.post("/api/sessions?mask=none", json={"image_id": image_id}).json()["session_id"]
    native = http.post(f"/api/sessions/{session}/clicks?mask=png", json={"x": width - 1, "y": height - 1}).json()
    png = base64.b64decode(native["mask"]["data"].split(",", 1)[1])
    expected = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE) > 0

    data_uri = "data:image/png;base64," + b64(image)
    studio = studio_predict(http, data_uri, [keypoint(100, 100, width, height)])
    assert studio.status_code == 200, studio.text
    assert studio.json()["results"][0]["result"][0]["value"]["rle"] == mask_to_rle(expected)
    cvat = http.post("/cvat/interactor", json={"image": b64(image), "pos_points": [[width, height]], "neg_points": []})
    assert cvat.status_code == 200, cvat.text
    assert (np.array(cvat.json()["mask"], bool) == expected).all()
    marks = [{"type": "point", "data": [width, height], "label": 1}]
    anylabeling = http.post("/v1/predict", json={"model": "inter2former", "image": b64(image),
                                                 "params": {"marks": marks, "epsilon_factor": 0.0}})
    assert anylabeling.status_code == 200, anylabeling.text
    drawn = np.zeros((height, width), np.uint8)
    for shape in anylabeling.json()["data"]["shapes"]:
        cv2.fillPoly(drawn, [np.array(shape["points"], np.int32)], 1)
    native_polygons = http.get(f"/api/sessions/{session}?mask=none").json()["polygons"]
    expected_drawn = np.zeros((height, width), np.uint8)
    for polygon in native_polygons:
        cv2.fillPoly(expected_drawn, [np.array(polygon, np.int32)], 1)
    assert (drawn == expected_drawn).all()

    beyond = [studio_predict(http, data_uri, [keypoint(100.5, 50, width, height)]),
              http.post("/cvat/interactor", json={"image": b64(image), "pos_points": [[width + 0.5, 0]], "neg_points": []}),
              http.post("/v1/predict", json={"model": "inter2former", "image": b64(image),
                                             "params": {"marks": [{"type": "point", "data": [0, height + 1], "label": 1}]}})]
    assert [r.status_code for r in beyond] == [422] * 3
    assert all("outside" in json.dumps(r.json()) for r in beyond)
