"""The server against slow, greedy and malformed clients and task image servers (issue 23, rows
2-8 and 10), each on the real server (``i2f-deploy serve`` on loopback): the fetch deadline covers
headers and body, slow fetches hold only their own threads, point limits come before any work,
images in flight stay within ``--image-memory-mb``, malformed values get 4xx (never 500), encoded
task images are refused, start-up refusals are one line, SIGTERM finishes the queued encodings,
and slow request headers are cut off."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import signal
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import anyio
import cv2
import httpx
import numpy as np
import pytest
from support.commands import assert_refused
from support.images import b64, png_bytes
from support.processes import peak_rss_mb, rss_mb
from support.servers import LoopbackServer, QuietHandler, free_port, running_server
from typer.testing import CliRunner

from i2f_deploy.cli import app
from i2f_deploy.loadtest import synthetic_image
from i2f_deploy.preprocess import geometry_for, logits_to_image, logits_to_mask
from i2f_deploy.prompt_map import Click
from i2f_deploy.serve.adapters.cvat import ClickOrder
from i2f_deploy.serve.budget import Busy, MemoryBudget, decode_bytes, mask_bytes
from i2f_deploy.serve.images import decode_image
from i2f_deploy.serve.pools import WorkPool

pytestmark = pytest.mark.system

FETCH_TIMEOUT = 3
LABEL_CONFIG = ('<View><Image name="image" value="$image"/><BrushLabels name="brush" toName="image"/>'
                '<KeyPointLabels name="kp" toName="image" smart="true"/></View>')
SLOW_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 10\r\n\r\n0123456789"
GZIP_OF_ZEROS_MB = 256


def gzip_of_zeros(megabytes: int) -> bytes:
    """``megabytes`` MiB of zeros, gzip-compressed (about 1/1000 of that)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    return b"".join(packer.compress(zeros) for _ in range(megabytes)) + packer.flush()


class ImageServer(LoopbackServer):
    """A loopback task image server: a good image, a 6000 x 6000 one, slow headers, a slow body, a gzip bomb.
    Counts the requests it is serving at once (``active``, ``peak``)."""

    daemon_threads = True

    def __init__(self, png: bytes, large_png: bytes) -> None:
        self.active = self.peak = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        bomb = gzip_of_zeros(GZIP_OF_ZEROS_MB)
        server = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with server.lock:
                    server.active += 1
                    server.peak = max(server.peak, server.active)
                try:
                    self.answer()
                except OSError:  # the fetcher hung up
                    pass
                finally:
                    with server.lock:
                        server.active -= 1

            def answer(self) -> None:
                if self.path == "/image.png":
                    self.send(200, {"Content-Type": "image/png"}, png)
                elif self.path == "/large.png":
                    self.send(200, {"Content-Type": "image/png"}, large_png)
                elif self.path == "/bomb.png":
                    self.send(200, {"Content-Type": "image/png", "Content-Encoding": "gzip"}, bomb)
                elif self.path == "/slow-head.png":  # a header byte every 0.5 s: each read within any timeout
                    for byte in SLOW_HEAD:
                        if server.stop.wait(0.5):
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                elif self.path == "/slow-body.png":  # headers at once, then a byte a second
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n")
                    self.wfile.flush()
                    for _ in range(1000):
                        if server.stop.wait(1.0):
                            return
                        self.wfile.write(b"x")
                        self.wfile.flush()
                else:
                    self.send(404, {}, b"")

        super().__init__(Handler)

    def close(self) -> None:
        self.stop.set()
        self.shutdown()
        self.server_close()


@pytest.fixture(scope="module")
def image(golden_rgb: np.ndarray) -> np.ndarray:
    return golden_rgb


def large_png(side: int = 6000, shrink: int = 0) -> bytes:
    """A 6000 x 6000 PNG of a disc (about 150 kB)."""
    rgb = np.zeros((side, side, 3), np.uint8)
    cv2.circle(rgb, (side // 2, side // 2), side // 3 - shrink, (200, 60, 40), -1)
    return png_bytes(rgb)


@pytest.fixture(scope="module")
def images(image: np.ndarray) -> Iterator[ImageServer]:
    server = ImageServer(png_bytes(image), large_png())
    yield server
    server.close()


@pytest.fixture(scope="module")
def served(tiny_artifacts: Path, images: ImageServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """The real server, Label Studio's address being the loopback image server; (URL, pid)."""
    log = tmp_path_factory.mktemp("hostile") / "server.log"
    with running_server(tiny_artifacts, log, "--threads", "1", "--label-studio-url", images.url,
                        "--fetch-timeout", str(FETCH_TIMEOUT), "--fetch-workers", "40", "--max-clicks", "50",
                        "--header-timeout", "2", "--body-timeout", "2") as (url, process):
        yield url, process.pid


@pytest.fixture()
def http(served: tuple[str, int]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[0], timeout=60) as client:
        yield client


def studio_predict(client: httpx.Client, ref: str, x: object = 50.0, y: object = 50.0) -> httpx.Response:
    point = {"type": "keypointlabels", "is_positive": True, "value": {"x": x, "y": y, "keypointlabels": ["Object"]},
             "from_name": "kp", "to_name": "image"}
    return client.post("/predict", json={"tasks": [{"id": 1, "data": {"image": ref}}], "label_config": LABEL_CONFIG,
                                         "params": {"context": {"result": [point]}}})


def clicked_session(client: httpx.Client, rgb: np.ndarray) -> str:
    """A session on ``rgb`` (posted, hence cached), with its first click done."""
    image_id = client.post("/api/images", files={"file": ("x.png", png_bytes(rgb), "image/png")}).json()["image_id"]
    session_id = client.post("/api/sessions?mask=none", json={"image_id": image_id}).json()["session_id"]
    assert client.post(f"/api/sessions/{session_id}/clicks?mask=none&polygons=false", json={"x": 200, "y": 200}).status_code == 200
    return session_id


# ---------------------------------------------------------------- row 2: the fetch deadline
def test_fetch_deadline_covers_headers_and_body(http: httpx.Client) -> None:
    assert studio_predict(http, "/image.png").status_code == 200
    for ref in ("/slow-head.png", "/slow-body.png"):
        start = time.monotonic()
        response = studio_predict(http, ref)
        elapsed = time.monotonic() - start
        assert response.status_code == 424 and f"timed out after {FETCH_TIMEOUT} s" in response.json()["detail"], ref
        assert elapsed < FETCH_TIMEOUT + 1.5, f"{ref}: {elapsed:.1f} s against --fetch-timeout {FETCH_TIMEOUT}"


# ---------------------------------------------------------------- row 3 and acceptance 3: slow fetches
def test_forty_slow_fetches_leave_health_and_clicks_alone(http: httpx.Client, images: ImageServer, image: np.ndarray) -> None:
    """40 /predict calls whose task image trickles in at a byte a second: while they are all in
    flight, /health answers within a second and a native click on a cached image answers."""
    session_id = clicked_session(http, image)
    settle = time.monotonic() + 5
    while images.active and time.monotonic() < settle:  # an earlier test's slow answers notice their hang-up
        time.sleep(0.1)
    assert images.active == 0
    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        slow = [pool.submit(studio_predict, http, "/slow-body.png") for _ in range(40)]
        deadline = time.monotonic() + FETCH_TIMEOUT
        while images.active < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert images.active == 40, f"only {images.active} fetches in flight"
        latencies = []
        for _ in range(5):
            start = time.monotonic()
            assert http.get("/health", timeout=5).json()["status"] == "UP"
            latencies.append(time.monotonic() - start)
        start = time.monotonic()
        click = http.post(f"/api/sessions/{session_id}/clicks?mask=rle", json={"x": 120, "y": 90, "positive": False},
                          timeout=10)
        click_s = time.monotonic() - start
        in_flight = images.active
        statuses = [future.result().status_code for future in slow]
    assert max(latencies) < 1.0, latencies
    assert click.status_code == 200 and in_flight > 0, (click.status_code, in_flight, click_s)
    assert statuses == [424] * 40
    print(f"40 slow fetches in flight: /health max {max(latencies) * 1e3:.0f} ms, a click {click_s * 1e3:.0f} ms")


def test_a_full_work_pool_answers_busy() -> None:
    """A call that waits longer than the pool's wait for a slot gets Busy (503), not a queue."""
    pool = WorkPool("slow work", slots=1, wait_s=0.2)

    async def two_calls() -> list[object]:
        results: list[object] = []

        async def call() -> None:
            try:
                results.append(await pool.run(time.sleep, 1.0))
            except Busy as exc:
                results.append(exc)

        async with anyio.create_task_group() as group:
            group.start_soon(call)
            await anyio.sleep(0.05)
            group.start_soon(call)
        return results

    results = anyio.run(two_calls)
    assert isinstance(results[0], Busy) and "all 1 slots for slow work" in str(results[0]) and results[1] is None


# ---------------------------------------------------------------- row 4: limits before any work
def test_point_limits_come_before_any_work(http: httpx.Client) -> None:
    many = [[i % 500, i // 500] for i in range(12_000)]
    start = time.monotonic()
    response = http.post("/cvat/interactor", json={"image": "not decoded", "pos_points": many[::2], "neg_points": many[1::2]})
    assert response.status_code == 422 and "12000 points: more than the limit of 50" in response.json()["detail"]
    assert time.monotonic() - start < 2
    marks = [{"type": "point", "data": [1, 1], "label": 1}] * 51
    response = http.post("/v1/predict", json={"model": "inter2former", "image": "not decoded", "params": {"marks": marks}})
    assert response.status_code == 422 and "51 points: more than the limit" in response.json()["error"]["message"]
    point = {"type": "keypointlabels", "value": {"x": 1, "y": 1}}
    response = http.post("/predict", json={"tasks": [{"data": {"image": "/never-fetched.png"}}], "label_config": LABEL_CONFIG,
                                           "params": {"context": {"result": [point] * 51}}})
    assert response.status_code == 422 and "51 points: more than the limit" in response.json()["detail"]


def test_cvat_click_order_is_linear() -> None:
    """12 000 points (the issue's 25 s of CPU) ordered in well under a second."""
    clicks = [Click(y=i // 1000, x=i % 1000, positive=i % 3 > 0) for i in range(12_000)]
    order = ClickOrder()
    start = time.perf_counter()
    assert order.order("img", clicks) == clicks
    assert order.order("img", clicks[::-1]) == clicks  # all known: the previous order
    assert order.order("img", clicks[1:]) == clicks[1:]  # the first removed: the rest as given
    assert time.perf_counter() - start < 1.0


# ---------------------------------------------------------------- row 5: memory of images in flight
def test_memory_estimates_cover_the_measured_peaks() -> None:
    """decode_bytes and mask_bytes hold at least what decoding and a mask take (numpy's
    allocations, as tracemalloc sees them), at a size where the per-pixel terms dominate."""
    side = 3000
    rgb = np.zeros((side, side, 3), np.uint8)
    cv2.circle(rgb, (side // 2, side // 2), side // 3, (200, 60, 40), -1)
    data = png_bytes(rgb)
    del rgb
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        decode_image(data, side * side, MemoryBudget(1 << 30))
        decode_peak = tracemalloc.get_traced_memory()[1]
        logits = np.random.default_rng(0).standard_normal((1, 1, 512, 512)).astype(np.float32)
        geometry = geometry_for(side, side, 512)
        tracemalloc.reset_peak()
        logits_to_mask(logits, geometry)
        mask_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert decode_peak <= decode_bytes(side, side), (decode_peak, decode_bytes(side, side))
    assert mask_peak <= mask_bytes(side, side, 512), (mask_peak, mask_bytes(side, side, 512))


def test_logits_to_mask_is_the_thresholded_logits() -> None:
    rng = np.random.default_rng(1)
    for height, width in ((700, 1300), (1, 5), (513, 512), (1000, 999)):
        geometry = geometry_for(height, width, 256)
        logits = rng.standard_normal((1, 1, 256, 256)).astype(np.float32)
        for band in (1, 7, 128):
            assert np.array_equal(logits_to_mask(logits, geometry, band), logits_to_image(logits, geometry) > 0)


def test_four_large_images_at_once_stay_within_the_budget(tiny_artifacts: Path, tmp_path: Path) -> None:
    """Four CVAT clients send a 6000 x 6000 PNG (about 150 kB) with a point, all at once (a 503 is
    retried after its Retry-After): the server's peak memory grows by at most what
    docs/security.md's *Memory* documents: --image-memory-mb, the pixels of the images waiting for the encoder (3
    bytes a pixel), their features in the cache, the answers being written (CVAT's mask rows, 2
    bytes a pixel), and 64 MiB for buffers. (Before the budget and the compact answer: +4.4 GiB.)"""
    budget_mb, side = 256, 6000
    uploads = [large_png(side, 40 * index) for index in range(4)]
    with running_server(tiny_artifacts, tmp_path / "server.log", "--threads", "1", "--image-memory-mb",
                        str(budget_mb)) as (url, process), httpx.Client(base_url=url, timeout=120) as client:
        clicked_session(client, synthetic_image(0))  # the graphs' working memory
        baseline = rss_mb(process.pid)
        Path(f"/proc/{process.pid}/clear_refs").write_text("5")  # VmHWM from here on

        def annotate(data: bytes) -> tuple[int, int]:
            refused = 0
            for _ in range(60):
                response = client.post("/cvat/interactor", json={"image": base64.b64encode(data).decode(),
                                                                 "pos_points": [[side // 2, side // 2]]})
                if response.status_code != 503:
                    assert response.status_code == 200, response.text
                    assert len(response.content) > 2 * side * side  # the mask, row by row
                    return 200, refused
                assert "image-memory-mb" in response.json()["detail"]
                refused += 1
                time.sleep(float(response.headers["Retry-After"]) / 4)
            return 503, refused

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(annotate, uploads))
        growth = peak_rss_mb(process.pid) - baseline
        features_mb = client.get("/health").json()["cache"]["bytes"] / (1 << 20)
    assert [status for status, _ in results] == [200] * 4, results
    allowed = budget_mb + 4 * (3 + 2) * side * side / (1 << 20) + features_mb + 64
    assert growth <= allowed, f"peak RSS grew by {growth:.0f} MiB, more than {allowed:.0f} MiB"
    print(f"4 x {side}x{side}: peak RSS +{growth:.0f} MiB (allowed {allowed:.0f}); 503s retried: {[r for _, r in results]}")


def test_one_large_image_costs_its_pixels_not_a_gigabyte(http: httpx.Client, served: tuple[str, int]) -> None:
    """A 6000 x 6000 task image through Label Studio's /predict (fetched, decoded, encoded, one
    brush RLE answer), then the same image clicked through the native API: each raises the peak
    memory by at most what docs/security.md's *Memory* documents: its decoded pixels (kept until
    the encoder has run), its mask, the answer's temporaries (2 bytes a pixel), its features
    (21 MiB), and 64 MiB of buffers (before: +1.6 GiB and +1.0 GiB)."""
    pid, side = served[1], 6000
    allowed = (decode_bytes(side, side) + mask_bytes(side, side, 512) + 2 * side * side) / (1 << 20) + 21 + 64
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    baseline = rss_mb(pid)
    response = studio_predict(http, "/large.png")
    assert response.status_code == 200 and response.json()["results"][0]["result"][0]["type"] == "brushlabels"
    studio_growth = peak_rss_mb(pid) - baseline
    image_id = http.post("/api/images", files={"file": ("large.png", large_png(side, 80), "image/png")}).json()["image_id"]
    session_id = http.post("/api/sessions?mask=none", json={"image_id": image_id}).json()["session_id"]
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    baseline = rss_mb(pid)
    assert http.post(f"/api/sessions/{session_id}/clicks", json={"x": side // 2, "y": side // 2}).status_code == 200
    click_growth = peak_rss_mb(pid) - baseline
    print(f"one {side}x{side} image: Label Studio /predict +{studio_growth:.0f} MiB, a native click "
          f"+{click_growth:.0f} MiB (allowed {allowed:.0f})")
    assert studio_growth <= allowed and click_growth <= allowed, (studio_growth, click_growth, allowed)


# ---------------------------------------------------------------- row 6: no 500
def test_malformed_values_get_4xx_not_500(http: httpx.Client, image: np.ndarray) -> None:
    for ref in ("/data/upload/1/x\t.png", "/data/upload/1/x\r.png", "/data/upload/1/x\n.png", "http://[::1/x"):
        response = studio_predict(http, ref)
        assert response.status_code == 422 and "URL" in response.json()["detail"], (ref, response.text)
    huge = int("9" * 400)
    response = studio_predict(http, "/image.png", x=huge)
    assert response.status_code == 422 and "numeric" in response.json()["detail"], response.text
    frame = b64(image)
    response = http.post("/cvat/interactor", json={"image": frame, "pos_points": [[huge, 5]]})
    assert response.status_code == 422 and "not a pair of numbers" in response.json()["detail"], response.text
    response = http.post("/v1/predict", json={"model": "inter2former", "image": frame,
                                              "params": {"marks": [{"type": "point", "data": [5, huge], "label": 1}]}})
    assert response.status_code == 422, response.text
    image_id = http.post("/api/images/base64", json={"image": frame}).json()["image_id"]
    session_id = http.post("/api/sessions?mask=none", json={"image_id": image_id}).json()["session_id"]
    for body in (b'{"x": NaN, "y": 1}', b'{"x": 1, "y": Infinity}', b'{"x": -Infinity, "y": 1}', b'{"x": 1e400, "y": 1}'):
        response = http.post(f"/api/sessions/{session_id}/clicks", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 422 and response.json()["detail"], (body, response.text)


# ---------------------------------------------------------------- row 7: encoded task images
def test_gzip_encoded_task_image_refused_before_decompressing(http: httpx.Client, served: tuple[str, int]) -> None:
    studio_predict(http, "/image.png")
    before = rss_mb(served[1])
    response = studio_predict(http, "/bomb.png")
    assert response.status_code == 424 and "Content-Encoding 'gzip'" in response.json()["detail"], response.text
    assert rss_mb(served[1]) - before < 16, f"RSS grew by {rss_mb(served[1]) - before:.0f} MiB"


# ---------------------------------------------------------------- row 8: start-up and shutdown
def test_start_up_refusals_are_one_line(tiny_artifacts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from i2f_deploy.serve import core

    def no_serving(*args: object, **kwargs: object) -> None:
        raise AssertionError("the server started serving")

    monkeypatch.setattr(uvicorn.Server, "run", no_serving)
    runner = CliRunner()
    free = ["serve", str(tiny_artifacts), "--port", str(free_port())]
    assert_refused(runner.invoke(app, [*free, "--cache-mb", "1"]), "--cache-mb 1 cannot hold one image")
    with socket.socket() as taken:  # a port in use: a refusal that regressed fails there, it does not serve
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        serve = ["serve", str(tiny_artifacts), "--port", str(port)]
        for value in ("inf", "nan", "-inf"):
            assert_refused(runner.invoke(app, [*serve, "--fetch-timeout", value]),
                           f"--fetch-timeout / I2F_FETCH_TIMEOUT_S must be finite, got {value}")
        assert_refused(runner.invoke(app, [*serve, "--header-timeout", "inf"]), "--header-timeout / I2F_HEADER_TIMEOUT_S must be finite")
        assert_refused(runner.invoke(app, [*serve, "--body-timeout", "0"]), "--body-timeout / I2F_BODY_TIMEOUT_S")
        assert_refused(runner.invoke(app, [*serve, "--image-memory-mb", "64"]), "--image-memory-mb 64 cannot hold one image")

        def no_engine(config: object) -> None:
            raise AssertionError("the models were loaded although the port is taken")

        monkeypatch.setattr(core, "Engine", no_engine)
        result = runner.invoke(app, serve)
    assert_refused(result, f"cannot listen on 127.0.0.1 port {port}: Address already in use")


def test_serves_on_ipv6_loopback(tiny_artifacts: Path, tmp_path: Path) -> None:
    with running_server(tiny_artifacts, tmp_path / "server.log", host="::1") as (url, _):
        assert url.startswith("http://[::1]:")
        assert httpx.get(f"{url}/v1/models", timeout=10).status_code == 200
        refused = httpx.get(f"{url}/v1/models", headers={"Host": "attacker.example"}, timeout=10)
        assert refused.status_code == 400


def test_sigterm_finishes_the_queued_encodings(tiny_artifacts: Path, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    frames = [png_bytes(cv2.resize(synthetic_image(i), (1024, 1024))) for i in range(10)]
    with running_server(tiny_artifacts, log, "--threads", "1") as (url, process), httpx.Client(base_url=url) as client:
        queued = [client.post("/api/images", files={"file": ("x.png", data, "image/png")}).json()["queued"]
                  for data in frames]
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    text = log.read_text()
    assert queued == [True] * 10 and "images still queued before stopping" in text, text
    assert "encoder stopped after 10 encoder runs" in text, text


# ---------------------------------------------------------------- row 10: slow request headers
def test_slow_request_headers_are_cut_off(http: httpx.Client, served: tuple[str, int]) -> None:
    """A client sending a header byte every 0.5 s is disconnected after --header-timeout (2 s),
    while a keep-alive client's next request is unaffected."""
    host, port = httpx.URL(served[0]).host, httpx.URL(served[0]).port
    request = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: {'a' * 100}\r\n\r\n".encode()
    with socket.create_connection((host, port)) as slow:
        slow.setblocking(False)
        start = time.monotonic()
        closed = False
        for byte in request:
            try:
                slow.sendall(bytes([byte]))
                if slow.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                    closed = True
                    break
            except BlockingIOError:
                pass
            except OSError:
                closed = True
                break
            if time.monotonic() - start > 8:
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - start
    assert closed and elapsed < 4, f"connection {'closed' if closed else 'still open'} after {elapsed:.1f} s"
    for _ in range(2):  # a keep-alive connection's next request is still answered
        assert http.get("/health").status_code == 200


def test_a_slow_request_body_is_answered_408_and_cut_off(http: httpx.Client, served: tuple[str, int]) -> None:
    """A client sending a body byte every 0.3 s is answered 408 after --body-timeout (2 s) and
    disconnected; a body sent at once on the next connection is answered as usual."""
    host, port = httpx.URL(served[0]).host, httpx.URL(served[0]).port
    body = json.dumps({"image_id": "0" * 64, "padding": "p" * 40}).encode()
    head = (f"POST /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection((host, port), timeout=10) as slow:
        slow.sendall(head)
        start = time.monotonic()
        answer = b""
        for byte in body:
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.3)
            if time.monotonic() - start > 2.5:
                break
        while chunk := slow.recv(4096):
            answer += chunk
        elapsed = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"did not arrive within 2 s (--body-timeout)" in answer and elapsed < 4, (answer, elapsed)
    whole = http.post("/api/sessions", json={"image_id": "0" * 64})
    assert whole.status_code == 404, whole.text  # answered: no such image
