"""The server's defences, on the real server (``i2f-deploy serve`` on 127.0.0.1): task image URLs
outside Label Studio's address refused before any connection (a loopback listener records none),
redirects out of it refused, the token and Label Studio's basic auth enforced, a decompression
bomb refused without the server's memory growing, over-limit bodies refused, guessed session ids
useless, CORS closed, and request log lines free of ids, tokens and image data."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import socket
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from support.images import png_bytes
from support.processes import rss_mb
from support.servers import LoopbackServer, QuietHandler, running_server

from i2f_deploy.serve import server
from i2f_deploy.serve.config import ServeConfig

pytestmark = pytest.mark.system

TOKEN = "t0ken-" + "x" * 20
API_KEY = "legacy-api-key-123"
LABEL_CONFIG = ('<View><Image name="image" value="$image"/><BrushLabels name="brush" toName="image"/>'
                '<KeyPointLabels name="kp" toName="image" smart="true"/></View>')


class Recorder(LoopbackServer):
    """A loopback HTTP server that records every request (path, Authorization) it receives."""

    def __init__(self, routes: dict[str, tuple[int, dict[str, str], bytes]]) -> None:
        self.routes = routes
        self.requests: list[tuple[str, str | None]] = []
        recorder = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                recorder.requests.append((self.path, self.headers.get("Authorization")))
                self.send(*recorder.routes.get(self.path, (404, {}, b"")))

        super().__init__(Handler)


@pytest.fixture(scope="module")
def image(golden_rgb: np.ndarray) -> np.ndarray:
    return golden_rgb


@pytest.fixture(scope="module")
def outsider() -> Iterator[Recorder]:
    """A host the server must never contact."""
    recorder = Recorder({"/photo.png": (200, {}, b"")})
    yield recorder
    recorder.shutdown()


@pytest.fixture(scope="module")
def label_studio(image: np.ndarray, outsider: Recorder) -> Iterator[Recorder]:
    """Stands in for Label Studio's file serving, with redirects in and out of its address."""
    recorder = Recorder({})
    recorder.routes.update({
        "/data/upload/1/photo.png": (200, {}, png_bytes(image)),
        "/data/upload/1/moved.png": (302, {"Location": "/data/upload/1/photo.png"}, b""),
        "/data/upload/1/out.png": (302, {"Location": f"{outsider.url}/photo.png"}, b""),
    })
    yield recorder
    recorder.shutdown()


@pytest.fixture(scope="module")
def served(tiny_artifacts: Path, label_studio: Recorder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, Path]]:
    """The real server with a token, Label Studio's address and key, and basic auth, all from the
    environment variables the tools use; yields (URL, pid, log file)."""
    log = tmp_path_factory.mktemp("security") / "server.log"
    env = {"I2F_SERVE_TOKEN": TOKEN, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": API_KEY,
           "BASIC_AUTH_USER": "studio", "BASIC_AUTH_PASS": "s3cret"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        with running_server(tiny_artifacts, log, "--threads", "2", "--max-upload-mb", "2", "--max-json-kb", "1",
                            "--max-clicks", "3") as (url, process):
            yield url, process.pid, log


@pytest.fixture()
def http(served: tuple[str, int, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[0], timeout=60, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def studio_predict(http: httpx.Client, ref: str, width: int, height: int) -> httpx.Response:
    point = {"type": "keypointlabels", "is_positive": True, "original_width": width, "original_height": height,
             "value": {"x": 50.0, "y": 50.0, "keypointlabels": ["Object"]}, "from_name": "kp", "to_name": "image"}
    return http.post("/predict", json={"tasks": [{"id": 1, "data": {"image": ref}}], "label_config": LABEL_CONFIG,
                                       "params": {"context": {"result": [point]}}})


def test_task_images_only_from_label_studio(http: httpx.Client, image: np.ndarray, label_studio: Recorder,
                                            outsider: Recorder) -> None:
    height, width = image.shape[:2]
    label_studio.requests.clear()
    assert studio_predict(http, "/data/upload/1/photo.png", width, height).status_code == 200
    assert label_studio.requests == [("/data/upload/1/photo.png", f"Token {API_KEY}")]  # the ML backends' scheme
    assert studio_predict(http, "upload/1/photo.png", width, height).status_code == 200  # as the SDK completes it
    assert studio_predict(http, "/data/upload/1/moved.png", width, height).status_code == 200  # redirect inside

    for ref in (f"{outsider.url}/photo.png", "file:///etc/passwd", f"http://localhost:{outsider.server_address[1]}/photo.png",
                f"{label_studio.url}@127.0.0.1:{outsider.server_address[1]}/photo.png", "//127.0.0.1/photo.png",
                f"{label_studio.url}/data/../photo.png", "s3://bucket/photo.png"):
        response = studio_predict(http, ref, width, height)
        assert response.status_code == 403 and "refused to fetch" in response.json()["detail"], (ref, response.text)
    response = studio_predict(http, "/data/upload/1/out.png", width, height)  # a redirect out of the base
    assert response.status_code == 403 and f"{outsider.url}/photo.png" in response.json()["detail"]
    assert outsider.requests == []  # nothing ever reached the other host


def test_token_and_basic_auth(served: tuple[str, int, Path]) -> None:
    url = served[0]
    with httpx.Client(base_url=url, timeout=30) as anonymous:
        assert anonymous.get("/health").json()["status"] == "UP"  # public: Label Studio polls it
        assert anonymous.get("/").status_code == 200  # the page loads, then asks for the token
        for path in ("/v1/models", "/api/images/0", "/api/sessions/x"):
            response = anonymous.get(path)
            assert response.status_code == 401 and "Bearer" in response.headers["www-authenticate"], path
        assert anonymous.post("/predict", json={}).status_code == 401
        assert anonymous.post("/cvat/interactor", json={}).status_code == 401
        wrong = [{"Authorization": "Bearer nope"}, {"Authorization": TOKEN}, {"Token": TOKEN + "x"},
                 {"Authorization": "Basic " + base64.b64encode(b"studio:wrong").decode()}]
        assert [anonymous.get("/v1/models", headers=h).status_code for h in wrong] == [401] * 4
        right = [{"Authorization": f"Bearer {TOKEN}"}, {"Token": TOKEN},  # X-AnyLabeling's header
                 {"Authorization": "Basic " + base64.b64encode(b"studio:s3cret").decode()}]  # Label Studio's
        assert [anonymous.get("/v1/models", headers=h).status_code for h in right] == [200] * 3


def bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of zeros declaring ``width`` x ``height``: small on disk, huge decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\0" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row * 1000) for _ in range(height // 1000)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_decompression_bomb_refused_without_decoding(http: httpx.Client, served: tuple[str, int, Path]) -> None:
    bomb = bomb_png(50_000, 50_000)
    assert len(bomb) < 1 << 20  # 50 000 x 50 000 pixels in under a MiB (Pillow's own ceiling refuses it)
    small_bomb = bomb_png(10_000, 10_000)  # under Pillow's ceiling, over --max-pixels: refused by the limit itself
    response = http.post("/api/images", files={"file": ("bomb.png", small_bomb, "image/png")})
    assert response.status_code == 413 and "declares 10000x10000 pixels, more than the limit" in response.json()["detail"]
    pid = served[1]
    http.get("/health")
    before = rss_mb(pid)
    for send in ("file", "base64"):
        if send == "file":
            response = http.post("/api/images", files={"file": ("bomb.png", bomb, "image/png")})
        else:
            response = http.post("/api/images/base64", json={"image": base64.b64encode(bomb).decode()})
        assert response.status_code == 413 and "declares more pixels than the limit" in response.json()["detail"], response.text
    assert rss_mb(pid) - before < 8, f"RSS grew from {before:.1f} to {rss_mb(pid):.1f} MiB"


def test_over_limit_bodies(http: httpx.Client, image: np.ndarray) -> None:
    upload = http.post("/api/images", files={"file": ("x.png", b"\0" * (3 << 20), "image/png")})  # --max-upload-mb 2
    assert upload.status_code == 413 and "limit of 2097152 bytes" in upload.json()["detail"]
    session = http.post("/api/sessions", json={"image_id": "0" * 2000})  # --max-json-kb 1
    assert session.status_code == 413 and "limit of 1024 bytes" in session.json()["detail"]
    image_id = http.post("/api/images", files={"file": ("x.png", png_bytes(image), "image/png")}).json()["image_id"]
    session_id = http.post("/api/sessions?mask=none", json={"image_id": image_id}).json()["session_id"]
    clicks = [http.post(f"/api/sessions/{session_id}/clicks?mask=none&polygons=false", json={"x": 5, "y": 5 + i})
              for i in range(4)]  # --max-clicks 3
    assert [c.status_code for c in clicks] == [200, 200, 200, 422] and "limit of 3" in clicks[-1].json()["detail"]
    points = [[1, 1]] * 4
    assert http.post("/cvat/interactor", json={"image": base64.b64encode(png_bytes(image)).decode(),
                                              "pos_points": points}).status_code == 422


def test_guessed_session_ids_do_not_work(http: httpx.Client, image: np.ndarray) -> None:
    image_id = http.post("/api/images", files={"file": ("x.png", png_bytes(image), "image/png")}).json()["image_id"]
    session_id = http.post("/api/sessions?mask=none", json={"image_id": image_id}).json()["session_id"]
    assert len(base64.urlsafe_b64decode(session_id + "==")) >= 16  # 128 random bits
    neighbours = [session_id[:-1] + ("A" if session_id[-1] != "A" else "B"), session_id.upper(), session_id[:-2]]
    guesses = [secrets.token_urlsafe(16) for _ in range(20)] + neighbours + ["1", "0", "admin", "../" + session_id]
    for guess in guesses:
        for method, path in (("GET", ""), ("POST", "/clicks"), ("POST", "/undo"), ("GET", "/mask.png"), ("DELETE", "")):
            response = http.request(method, f"/api/sessions/{guess}{path}", json={"x": 1, "y": 1} if path == "/clicks" else None)
            assert response.status_code == 404, (guess, path, response.status_code)
    assert http.get(f"/api/sessions/{session_id}?mask=none").status_code == 200


def test_cors_closed_by_default(http: httpx.Client) -> None:
    preflight = http.options("/api/sessions", headers={"Origin": "http://evil.example",
                                                        "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in http.get("/v1/models", headers={"Origin": "http://evil.example"}).headers


def test_other_host_names_are_not_answered_on_loopback(http: httpx.Client) -> None:
    """A page elsewhere that rebinds its own name to 127.0.0.1 sends that name as Host: refused."""
    assert http.get("/v1/models").status_code == 200  # Host: 127.0.0.1:port
    assert http.get("/v1/models", headers={"Host": "localhost"}).status_code == 200
    refused = http.get("/v1/models", headers={"Host": "attacker.example"})
    assert refused.status_code == 400 and "Invalid host header" in refused.text
    assert server.allowed_hosts("0.0.0.0", None) == ("*",)
    assert server.allowed_hosts("127.0.0.1", ["annotate.lan"]) == ("annotate.lan",)


def test_one_log_line_per_request_without_secrets(http: httpx.Client, image: np.ndarray,
                                                  served: tuple[str, int, Path]) -> None:
    encoded = base64.b64encode(png_bytes(image)).decode()
    image_id = http.post("/api/images/base64", json={"image": encoded}).json()["image_id"]
    created = http.post("/api/sessions?mask=none", json={"image_id": image_id})
    session_id = created.json()["session_id"]
    response = http.post(f"/api/sessions/{session_id}/clicks?mask=none", json={"x": 9, "y": 9})
    lines = [json.loads(line.split(": ", 1)[1]) for line in served[2].read_text().splitlines()
             if line.startswith("INFO: {")]
    by_id = {line["id"]: line for line in lines}
    line = by_id[response.headers["x-request-id"]]
    assert line["route"] == "/api/sessions/{session_id}/clicks" and line["status"] == 200 and line["ms"] > 0
    assert by_id[created.headers["x-request-id"]]["route"] == "/api/sessions"
    text = served[2].read_text()
    for secret in (session_id, TOKEN, API_KEY, "s3cret", encoded[:40]):
        assert secret not in text


def test_warning_when_listening_beyond_loopback_without_a_token(monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """``run`` warns before starting (uvicorn and the engine replaced: nothing listens)."""
    import uvicorn

    from i2f_deploy.serve import api, core, listen

    class NoEngine:
        def __init__(self, config: ServeConfig) -> None:
            pass

        def close(self) -> None:
            pass

    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    monkeypatch.setattr(listen, "bind", lambda host, port: socket.socket())
    monkeypatch.setattr(core, "Engine", NoEngine)
    monkeypatch.setattr(api, "create_app", lambda engine: None)
    for name in ("I2F_SERVE_TOKEN", "BASIC_AUTH_USER", "BASIC_AUTH_PASS"):  # set by the served fixture: the settings read them
        monkeypatch.delenv(name, raising=False)
    config = ServeConfig(artifact_dir=Path("unused"))
    for host, warned in (("0.0.0.0", True), ("192.168.1.5", True), ("127.0.0.1", False), ("localhost", False),
                         ("::1", False)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, "i2f_deploy.serve"):
            server.run(config, host=host)
        assert ("without a token" in caplog.text) == warned, host
    caplog.clear()
    with caplog.at_level(logging.WARNING, "i2f_deploy.serve"):
        server.run(ServeConfig(artifact_dir=Path("unused"), token="t"), host="0.0.0.0")
    assert "without a token" not in caplog.text
