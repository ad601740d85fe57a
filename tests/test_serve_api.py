"""The server's endpoints in process (FastAPI's TestClient on one engine over the tiny export):
the native flow against InteractiveSession, each adapter with its tool's request shape, and every
bad input the issue lists (never a 500)."""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from support.images import b64, coco_rle_to_mask, decode_brush_rle, png_bytes, png_to_mask

from i2f_deploy.runtime.session import InteractiveSession
from i2f_deploy.serve.api import create_app
from i2f_deploy.serve.config import ServeConfig
from i2f_deploy.serve.core import Engine

pytestmark = pytest.mark.graph

CLICKS = [(200, 200, True), (120, 90, False), (330, 250, True)]

LABEL_CONFIG = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <BrushLabels name="tag" toName="image"><Label value="Banana"/></BrushLabels>
  <PolygonLabels name="poly" toName="image"><Label value="Banana"/></PolygonLabels>
  <KeyPointLabels name="tag2" toName="image" smart="true"><Label value="Banana"/></KeyPointLabels>
</View>"""


@pytest.fixture(scope="module")
def image(golden_rgb: np.ndarray) -> np.ndarray:
    return golden_rgb


@pytest.fixture(scope="module")
def engine(tiny_artifacts: Path, image_server: str) -> Engine:
    engine = Engine(ServeConfig(artifact_dir=tiny_artifacts, max_upload_mb=2, max_pixels=2_000_000, threads=2,
                                allow_url_prefixes=(image_server,)))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def client(engine: Engine) -> TestClient:
    return TestClient(create_app(engine))


@pytest.fixture(scope="module")
def reference(tiny_artifacts: Path, image: np.ndarray) -> list[np.ndarray]:
    """InteractiveSession's masks after each of CLICKS."""
    session = InteractiveSession.from_artifact(tiny_artifacts, threads=2)
    session.set_image(image)
    return [session.add_click(x=x, y=y, positive=p).mask.copy() for x, y, p in CLICKS]


def post_image(client: TestClient, image: np.ndarray) -> dict:
    response = client.post("/api/images", files={"file": ("image.png", png_bytes(image), "image/png")})
    assert response.status_code == 200, response.text
    return response.json()


def png_mask(result: dict) -> np.ndarray:
    return png_to_mask(base64.b64decode(result["mask"]["data"].split(",", 1)[1]))


def rle_mask(result: dict) -> np.ndarray:
    return coco_rle_to_mask(result["mask"]["data"])


def test_native_flow_matches_the_interactive_session(client: TestClient, engine: Engine, image: np.ndarray,
                                                     reference: list[np.ndarray]) -> None:
    info = post_image(client, image)
    assert (info["width"], info["height"]) == (image.shape[1], image.shape[0])
    session = client.post("/api/sessions", json={"image_id": info["image_id"]}).json()
    assert session["clicks"] == [] and session["mask"] is None and not session["can_undo"]
    path = f"/api/sessions/{session['session_id']}"
    results = []
    for x, y, positive in CLICKS:
        response = client.post(f"{path}/clicks", json={"x": x, "y": y, "positive": positive})
        assert response.status_code == 200, response.text
        results.append(response.json())
    for result, expected in zip(results, reference):
        assert (png_mask(result) == expected).all()
        assert result["timings"]["decoder_runs"] == 1 and result["polygons"]
    runs = engine.decoder_runs
    undone = client.post(f"{path}/undo?mask=rle").json()
    assert (rle_mask(undone) == reference[1]).all() and undone["can_redo"] and len(undone["clicks"]) == 2
    redone = client.post(f"{path}/redo").json()
    assert (png_mask(redone) == reference[2]).all() and not redone["can_redo"]
    assert engine.decoder_runs - runs == 2  # one decoder run each, no replay
    reset = client.post(f"{path}/reset?polygons=false").json()
    assert reset["mask"] is None and reset["clicks"] == [] and reset["polygons"] is None
    download = client.get(f"{path}/mask.png")
    assert download.headers["content-type"] == "image/png" and "attachment" in download.headers["content-disposition"]
    assert not (cv2.imdecode(np.frombuffer(download.content, np.uint8), cv2.IMREAD_GRAYSCALE) > 0).any()
    assert client.delete(path).status_code == 204
    assert client.get(path).status_code == 404


def test_a_click_encodes_only_what_the_client_asked_for(client: TestClient, image: np.ndarray,
                                                       reference: list[np.ndarray], monkeypatch) -> None:
    """Polygons only: no PNG is made (nor RLE); a PNG only: no polygons are traced."""
    from i2f_deploy.serve import api, masks

    def refused(*args, **kwargs):
        raise AssertionError("encoded although the client did not ask for it")

    session = client.post("/api/sessions?mask=none&polygons=false", json={"image_id": post_image(client, image)["image_id"]})
    path = f"/api/sessions/{session.json()['session_id']}"
    x, y, positive = CLICKS[0]
    with monkeypatch.context() as patch:
        patch.setattr(masks, "to_png", refused)
        patch.setattr(masks, "to_coco_rle", refused)
        answer = client.post(f"{path}/clicks?mask=none&polygons=true", json={"x": x, "y": y, "positive": positive})
    assert answer.status_code == 200, answer.text
    assert answer.json()["mask"] is None and answer.json()["polygons"]
    with monkeypatch.context() as patch:
        patch.setattr(api, "outlines", refused)
        answer = client.post(f"{path}/undo?mask=png&polygons=false")
        answer = client.post(f"{path}/redo?mask=png&polygons=false")
    assert answer.status_code == 200, answer.text
    assert answer.json()["polygons"] is None and (png_mask(answer.json()) == reference[0]).all()


def test_the_same_image_again_skips_the_encoder(client: TestClient, engine: Engine, image: np.ndarray) -> None:
    first = post_image(client, image[::-1].copy())
    client.post("/api/sessions", json={"image_id": first["image_id"]})  # waits for the encoding
    runs = engine.encoder_runs
    again = client.post("/api/images/base64", json={"image": "data:image/png;base64," + b64(image[::-1].copy())}).json()
    assert again["image_id"] == first["image_id"] and again["encoded"] and not again["queued"]
    assert engine.encoder_runs == runs
    assert client.get(f"/api/images/{first['image_id']}").json()["encoded"]


def test_health_page_and_docs(client: TestClient) -> None:
    health = client.get("/health").json()
    assert health["status"] == "UP" and health["target_size"] == 512 and "cache" in health
    assert health["kernels"] == "native"  # both backends, where the kernels were built (CI builds them)
    assert "Open image" in client.get("/").text and client.get("/static/app.js").status_code == 200
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/images", "/api/sessions/{session_id}/clicks", "/api/sessions/{session_id}/undo",
                 "/predict", "/setup", "/v1/models", "/v1/predict", "/cvat/interactor"):
        assert path in paths


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("send", ["upload", "base64"])
def test_undecodable_images_get_422(client: TestClient, send: str) -> None:
    if send == "upload":
        response = client.post("/api/images", files={"file": ("x.png", b"not an image", "image/png")})
    else:
        response = client.post("/api/images/base64", json={"image": base64.b64encode(b"not an image").decode()})
    assert response.status_code == 422 and "cannot decode" in response.json()["detail"]
    assert client.post("/api/images/base64", json={"image": "%%%"}).status_code == 422


def test_oversized_bodies_and_images_get_413(client: TestClient) -> None:
    big = b"\0" * (3 << 20)  # over --max-upload-mb 2
    assert client.post("/api/images", files={"file": ("x.png", big, "image/png")}).status_code == 413
    chunks = (b"x" * 65536 for _ in range(48))  # no declared length: counted while read
    assert client.post("/api/images/base64", content=chunks, headers={"content-type": "application/json"}).status_code == 413
    huge = np.zeros((1500, 1500, 3), np.uint8)  # 2.25 M pixels over --max-pixels 2 M, a small PNG
    response = client.post("/api/images", files={"file": ("x.png", png_bytes(huge), "image/png")})
    assert response.status_code == 413 and "more than the limit" in response.json()["detail"]


def test_unknown_ids_get_404(client: TestClient) -> None:
    assert client.post("/api/sessions", json={"image_id": "0" * 32}).status_code == 404
    assert client.get("/api/images/nope").status_code == 404
    for route in ("clicks", "undo", "redo", "reset"):
        response = client.post(f"/api/sessions/nope/{route}", json={"x": 1, "y": 1})
        assert response.status_code == 404 and "unknown session" in response.json()["detail"]
    assert client.get("/api/sessions/nope/mask.png").status_code == 404


def test_clicks_outside_the_image_get_422_with_the_reason(client: TestClient, image: np.ndarray) -> None:
    session = client.post("/api/sessions", json={"image_id": post_image(client, image)["image_id"]}).json()
    path = f"/api/sessions/{session['session_id']}/clicks"
    height, width = image.shape[:2]
    for x, y in ((width, 0), (0, height), (-1, 5), (10**9, 5)):
        response = client.post(path, json={"x": x, "y": y})
        assert response.status_code == 422, response.text
        assert "outside" in response.json()["detail"] or "non-negative" in response.json()["detail"]
    assert client.post(path, json={"x": "left", "y": 3}).status_code == 422  # not an integer
    assert client.post(path, json={"y": 3}).status_code == 422
    assert client.post(f"{path}?mask=jpeg", json={"x": 1, "y": 1}).status_code == 422
    assert client.get(f"/api/sessions/{session['session_id']}").json()["clicks"] == []  # nothing was added


def test_concurrent_clicks_on_one_session_are_serialised(client: TestClient, image: np.ndarray) -> None:
    session = client.post("/api/sessions", json={"image_id": post_image(client, image)["image_id"]}).json()
    path = f"/api/sessions/{session['session_id']}"
    points = [(50 + 40 * i, 60 + 30 * i, i % 2 == 0) for i in range(6)]
    answers = []

    def click(x: int, y: int, positive: bool) -> None:
        answers.append(client.post(f"{path}/clicks?mask=none", json={"x": x, "y": y, "positive": positive}))

    threads = [threading.Thread(target=click, args=point) for point in points]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [200] * 6
    assert sorted(len(a.json()["clicks"]) for a in answers) == [1, 2, 3, 4, 5, 6]  # each saw the one before
    final = client.get(path).json()["clicks"]
    assert sorted((c["x"], c["y"]) for c in final) == sorted((x, y) for x, y, _ in points)


def test_a_full_encoder_queue_gets_503_and_the_worker_survives_it(tiny_artifacts: Path, image: np.ndarray) -> None:
    engine = Engine(ServeConfig(artifact_dir=tiny_artifacts, encoder_queue=1, threads=2))
    client = TestClient(create_app(engine))
    try:
        answers = [client.post("/api/images/base64", json={"image": b64(np.roll(image, 7 * i, axis=1))}) for i in range(6)]
        statuses = [a.status_code for a in answers]
        assert statuses[0] == 200 and 503 in statuses and set(statuses) <= {200, 503}
        refused = answers[statuses.index(503)]
        assert "queue is full" in refused.json()["detail"] and refused.headers["retry-after"]
        for accepted in (a for a in answers if a.status_code == 200):  # a click waits for its image's encoding
            session = client.post("/api/sessions", json={"image_id": accepted.json()["image_id"]}).json()
            assert client.post(f"/api/sessions/{session['session_id']}/clicks", json={"x": 5, "y": 5}).status_code == 200
        again = client.post("/api/images/base64", json={"image": b64(np.roll(image, 7 * statuses.index(503), axis=1))})
        assert again.status_code == 200  # the queue drained: the refused image is taken now
    finally:
        engine.close()


def test_a_small_cache_drops_old_images_and_a_repost_brings_them_back(tiny_artifacts: Path, image: np.ndarray) -> None:
    engine = Engine(ServeConfig(artifact_dir=tiny_artifacts, cache_mb=30, threads=2))  # one tiny image's features: 21 MiB
    client = TestClient(create_app(engine))
    try:
        first = post_image(client, image)
        session = client.post("/api/sessions", json={"image_id": first["image_id"]}).json()
        second = post_image(client, image[:, ::-1].copy())
        client.post("/api/sessions", json={"image_id": second["image_id"]})  # encoded: the first is dropped
        assert engine.store.stats()["evictions"] == 1 and engine.store.stats()["bytes"] <= 30 << 20
        response = client.post(f"/api/sessions/{session['session_id']}/clicks", json={"x": 5, "y": 5})
        assert response.status_code == 404 and "post it again" in response.json()["detail"]
        post_image(client, image)
        assert client.post(f"/api/sessions/{session['session_id']}/clicks", json={"x": 5, "y": 5}).status_code == 200
    finally:
        engine.close()


def test_an_image_dropped_right_after_a_click_still_gets_that_click_its_answer(tiny_artifacts: Path,
                                                                                image: np.ndarray) -> None:
    """The answer carries the image's size: nothing looks the image up after its click, so an
    eviction in between (another image's upload) cannot turn the click into a 404."""
    engine = Engine(ServeConfig(artifact_dir=tiny_artifacts, threads=2))
    segment = engine.segment

    def segment_then_drop(key, clicks):
        result = segment(key, clicks)
        if clicks:
            engine.store.remove(key)  # as the feature cache would to make room for another image
        return result

    engine.segment = segment_then_drop
    client = TestClient(create_app(engine))
    try:
        session = client.post("/api/sessions", json={"image_id": post_image(client, image)["image_id"]}).json()
        path = f"/api/sessions/{session['session_id']}"
        response = client.post(f"{path}/clicks", json={"x": 200, "y": 200})
        assert response.status_code == 200, response.text
        answer = response.json()
        assert (answer["width"], answer["height"]) == (image.shape[1], image.shape[0])
        assert png_mask(answer).shape == image.shape[:2] and answer["polygons"]
        assert client.get(f"{path}/mask.png").status_code == 200  # the session's last answer
        dropped = client.post(f"{path}/clicks", json={"x": 100, "y": 100})
        assert dropped.status_code == 404 and "post it again" in dropped.json()["detail"]  # the next click
    finally:
        engine.close()


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_runners_say_whether_their_runs_may_overlap(tiny_artifacts: Path, backend: str) -> None:
    from i2f_deploy import runtime

    for part in ("encoder", "decoder"):
        runner = runtime.load(tiny_artifacts, part, backend)
        # ONNX Runtime's sessions may overlap; its segmented native decoder reuses its kernels' buffers
        assert runner.concurrent is (backend == "onnxruntime" and runner.kernels == "function-body")


def test_too_many_clicks_get_422(tiny_artifacts: Path, image: np.ndarray) -> None:
    engine = Engine(ServeConfig(artifact_dir=tiny_artifacts, max_clicks=2, threads=2))
    client = TestClient(create_app(engine))
    try:
        session = client.post("/api/sessions", json={"image_id": post_image(client, image)["image_id"]}).json()
        path = f"/api/sessions/{session['session_id']}/clicks?mask=none"
        assert [client.post(path, json={"x": 9, "y": 9 + i}).status_code for i in range(3)] == [200, 200, 422]
    finally:
        engine.close()


# ---------------------------------------------------------------------------- Label Studio
def keypoint(x: float, y: float, positive: bool, width: int, height: int) -> dict:
    """A smart keypoint result as Label Studio sends it in ``params.context.result``."""
    return {"original_width": width, "original_height": height, "image_rotation": 0,
            "value": {"x": 100 * x / width, "y": 100 * y / height, "width": 0.32, "keypointlabels": ["Banana"]},
            "is_positive": positive, "id": "fBWv1t0S2L", "from_name": "tag2", "to_name": "image",
            "type": "keypointlabels", "origin": "manual"}


def label_studio_request(image_ref: str, points: list[dict]) -> dict:
    return {"tasks": [{"id": 1, "data": {"image": image_ref}}], "model_version": "", "project": "1.1694809921",
            "label_config": LABEL_CONFIG, "params": {"login": None, "password": None, "context": {"result": points}}}


@pytest.fixture(scope="module")
def image_server(image: np.ndarray) -> str:
    """A loopback HTTP server standing in for Label Studio's file storage."""
    files = {"/data/upload/1/photo.png": png_bytes(image), "/big.png": b"\0" * (40 << 20)}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/slow.png":
                time.sleep(3)
            body = files.get(self.path)
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_label_studio_predict_answers_brush_rle_and_polygons(client: TestClient, image: np.ndarray,
                                                            reference: list[np.ndarray], image_server: str) -> None:
    height, width = image.shape[:2]
    points = [keypoint(x, y, p, width, height) for x, y, p in CLICKS[:2]]
    response = client.post("/predict", json=label_studio_request(f"{image_server}/data/upload/1/photo.png", points))
    assert response.status_code == 200, response.text
    [prediction] = response.json()["results"]
    brush = next(r for r in prediction["result"] if r["type"] == "brushlabels")
    assert brush["from_name"] == "tag" and brush["to_name"] == "image" and brush["value"]["brushlabels"] == ["Banana"]
    assert (brush["original_width"], brush["original_height"]) == (width, height)
    decoded = decode_brush_rle(brush["value"]["rle"]).reshape(height, width, 4)[..., 3]
    assert ((decoded == 255) == reference[1]).all()
    polygons = [r for r in prediction["result"] if r["type"] == "polygonlabels"]
    assert polygons and all(r["from_name"] == "poly" and r["value"]["polygonlabels"] == ["Banana"] for r in polygons)
    assert all(0 <= x <= 100 and 0 <= y <= 100 for r in polygons for x, y in r["value"]["points"])


def test_label_studio_setup_health_and_requests_without_clicks(client: TestClient, image_server: str) -> None:
    setup = client.post("/setup", json={"project": "1.1694809921", "schema": LABEL_CONFIG, "extra_params": None})
    assert setup.status_code == 200 and setup.json()["model_version"].startswith("i2f-deploy-")
    assert client.get("/health").json()["status"] == "UP"
    empty = label_studio_request(f"{image_server}/data/upload/1/photo.png", [])
    assert client.post("/predict", json=empty).json() == {"results": []}


def test_label_studio_bad_requests(client: TestClient, image: np.ndarray, image_server: str) -> None:
    height, width = image.shape[:2]
    point = [keypoint(10, 10, True, width, height)]

    def predict(ref: str, points: list[dict] = point, config: str = LABEL_CONFIG) -> tuple[int, str]:
        response = client.post("/predict", json={**label_studio_request(ref, points), "label_config": config})
        return response.status_code, response.json()["detail"]

    assert predict("/data/upload/1/photo.png")[0] == 422  # relative, and no Label Studio URL configured
    status, detail = predict("file:///etc/passwd")
    assert status == 403 and detail.startswith("refused to fetch 'file:///etc/passwd'")
    assert predict("http://localhost:1/data/upload/1/photo.png")[0] == 403  # not under an allowed prefix
    assert predict(f"{image_server}/missing.png")[0] == 424
    assert predict(f"{image_server}/big.png")[0] == 413  # over --fetch-max-mb (32)
    assert predict(f"{image_server}/data/upload/1/photo.png", config="<View>")[0] == 422
    outside = [keypoint(10, 10, True, width, height) | {"value": {"x": 150.0, "y": 5.0, "keypointlabels": ["B"]}}]
    status, detail = predict(f"{image_server}/data/upload/1/photo.png", outside)
    assert status == 422 and "outside" in detail


def test_label_studio_relative_urls_resolve_against_its_address(tiny_artifacts: Path, image: np.ndarray,
                                                                image_server: str) -> None:
    engine = Engine(ServeConfig(artifact_dir=tiny_artifacts, threads=2, label_studio_url=image_server, label_studio_api_key="k",
                                fetch_timeout_s=1.0))
    client = TestClient(create_app(engine))
    try:
        height, width = image.shape[:2]
        request = label_studio_request("/data/upload/1/photo.png", [keypoint(200, 200, True, width, height)])
        assert client.post("/predict", json=request).status_code == 200
        slow = label_studio_request(f"{image_server}/slow.png", [keypoint(20, 20, True, width, height)])
        started = time.monotonic()
        response = client.post("/predict", json=slow)
        assert response.status_code == 424 and "timed out" in response.json()["detail"]
        assert time.monotonic() - started < 2.5
    finally:
        engine.close()


# ---------------------------------------------------------------------------- X-AnyLabeling
def test_anylabeling_models_and_point_marks_to_shapes(client: TestClient, image: np.ndarray) -> None:
    models = client.get("/v1/models").json()
    assert models["success"] and "inter2former" in models["data"]
    assert {"name": "button_add_point", "value": None} in models["data"]["inter2former"]["widgets"]
    assert client.get("/v1/models/inter2former/info").json()["data"]["model_id"] == "inter2former"
    assert client.get("/v1/models/other/info").json()["error"]["code"] == "MODEL_NOT_FOUND"
    marks = [{"type": "point", "data": [x, y], "label": int(p)} for x, y, p in CLICKS[:2]]
    body = {"model": "inter2former", "image": "data:image/png;base64," + b64(image),
            "params": {"marks": marks, "conf_threshold": 0.0, "iou_threshold": 0.0, "epsilon_factor": 0.001}}
    response = client.post("/v1/predict", json=body)
    assert response.status_code == 200, response.text
    shapes = response.json()["data"]["shapes"]
    assert shapes and all(s["shape_type"] == "polygon" and s["points"][0] == s["points"][-1] for s in shapes)
    assert all(0 <= x < image.shape[1] and 0 <= y < image.shape[0] for s in shapes for x, y in s["points"])
    no_marks = client.post("/v1/predict", json={**body, "params": {}}).json()
    assert no_marks == {"success": True, "data": {"shapes": [], "description": ""}}


def test_anylabeling_errors_keep_its_error_body(client: TestClient, image: np.ndarray) -> None:
    body = {"model": "inter2former", "image": b64(image), "params": {"marks": [{"type": "point", "data": [1e6, 5], "label": 1}]}}
    response = client.post("/v1/predict", json=body)
    assert response.status_code == 422 and response.json()["error"]["code"] == "INVALID_REQUEST"
    bad_image = client.post("/v1/predict", json={**body, "image": base64.b64encode(b"junk").decode()})
    assert bad_image.status_code == 422 and bad_image.json()["error"]["code"] == "INVALID_IMAGE"
    other = client.post("/v1/predict", json={**body, "model": "yolo11n"})
    assert other.status_code == 404 and other.json()["error"]["code"] == "MODEL_NOT_FOUND"
    assert client.post("/v1/predict", json={"image": b64(image)}).status_code == 422


# ---------------------------------------------------------------------------- CVAT
def test_cvat_interactor_second_click_skips_the_encoder(client: TestClient, engine: Engine, image: np.ndarray,
                                                        reference: list[np.ndarray]) -> None:
    frame = base64.b64encode(cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1]).decode()
    body = {"image": frame, "pos_points": [[200.0, 200.0]], "neg_points": [], "obj_bbox": None}
    first = client.post("/cvat/interactor", json=body)
    assert first.status_code == 200, first.text
    encoder_runs, decoder_runs = engine.encoder_runs, engine.decoder_runs
    second = client.post("/cvat/interactor", json={**body, "neg_points": [[120.4, 90.7]]})
    assert second.status_code == 200
    assert engine.encoder_runs == encoder_runs and engine.decoder_runs == decoder_runs + 1
    answer = second.json()
    mask = np.array(answer["mask"], bool)
    assert mask.shape == image.shape[:2] and len(answer["points"]) >= 3


def test_cvat_interactor_matches_the_session_on_a_lossless_frame(client: TestClient, image: np.ndarray,
                                                                 reference: list[np.ndarray]) -> None:
    body = {"image": b64(image), "pos_points": [[200, 200], [330, 250]], "neg_points": [[120, 90]]}
    client.post("/cvat/interactor", json={**body, "pos_points": [[200, 200]], "neg_points": []})
    client.post("/cvat/interactor", json={**body, "pos_points": [[200, 200]]})
    answer = client.post("/cvat/interactor", json=body).json()  # the third point, in the session's order
    assert (np.array(answer["mask"], bool) == reference[2]).all()


def test_cvat_bad_requests(client: TestClient, image: np.ndarray) -> None:
    frame = b64(image)
    for body in ({"image": frame, "pos_points": [], "neg_points": []},
                 {"image": frame, "pos_points": [[1e9, 3]], "neg_points": []},
                 {"image": frame, "pos_points": [[1, 2, 3]], "neg_points": []},
                 {"image": "junk!", "pos_points": [[1, 2]], "neg_points": []},
                 {"pos_points": [[1, 2]]}):
        response = client.post("/cvat/interactor", json=body)
        assert response.status_code == 422, (body, response.text)


def test_nuclio_handler_calls_the_same_core(tiny_artifacts: Path, image: np.ndarray, monkeypatch) -> None:
    from types import SimpleNamespace

    from i2f_deploy.serve.cvat import main

    monkeypatch.setenv("I2F_ARTIFACT_DIR", str(tiny_artifacts))
    monkeypatch.setenv("I2F_THREADS", "2")
    context = SimpleNamespace(user_data=SimpleNamespace(), Response=lambda **kw: SimpleNamespace(**kw))
    main.init_context(context)
    try:
        ok = main.handler(context, SimpleNamespace(body={"image": b64(image), "pos_points": [[200, 200]], "neg_points": []}))
        assert ok.status_code == 200 and ok.content_type == "application/json"
        assert np.array(json.loads(ok.body)["mask"]).shape == image.shape[:2]
        bad = main.handler(context, SimpleNamespace(body=b'{"image": "junk", "pos_points": [[1, 1]]}'))
        assert bad.status_code == 422 and "error" in json.loads(bad.body)
        invalid = main.handler(context, SimpleNamespace(body=b"{not json"))
        assert invalid.status_code == 422
    finally:
        context.user_data.engine.close()


def test_the_recorded_click_script_is_reproducible_and_undo_restores_earlier_answers(tiny_artifacts: Path,
                                                                                    image: np.ndarray) -> None:
    """tests/support/click_script.py, the record a refactor of the serving path must leave byte-identical:
    two fresh engines answer it identically, and its undo and redo answers are the earlier ones."""
    from support.click_script import record

    first = record(tiny_artifacts, image)
    assert record(tiny_artifacts, image) == first
    answers = {a["request"]: a for a in json.loads(first)}
    second_click = answers["POST /api/sessions/<session_id>/clicks?mask=rle"]["body"]
    undone = answers["POST /api/sessions/<session_id>/undo?mask=rle"]["body"]
    assert {**undone, "can_redo": False, "timings": None} == {**second_click, "timings": None}
