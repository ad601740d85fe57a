"""A bounded load test of ``i2f-deploy serve`` on this machine's loopback interface.

``i2f-deploy loadtest ARTIFACT_DIR`` starts the server on 127.0.0.1 (a free port), then
``--users`` threads each post the same ``--images`` synthetic images (so every image after the
first user's is a cache hit: the encoder runs once per image) and click ``--clicks`` times on
each, one request at a time like a person. It reports the per-click latency seen by the clients
(p50, p95, max), the server's decoder time, errors, encoder runs, and the server's resident memory
(after start-up and one warm-up click, i.e. the models and their working memory, and the peak of
samples every 0.1 s under load) against ``--cache-mb``.
``--ray N`` runs the server as a Ray Serve application with N replicas on a local Ray cluster
(its memory is then spread over the replicas' processes and not measured), and ``--own-images``
gives each user images of its own, so that users work on different images at once (shared
images keep them all on one image, hence on one replica).
The run fails (exit status 1) if any request failed, the encoder ran more than once per image, or
the peak memory grew past the cache budget plus ``--slack-mb``. Everything is bounded: a fixed
number of requests, each with a timeout, and ``--max-seconds`` overall.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from i2f_deploy.contract import Manifest
from i2f_deploy.errors import InputError
from i2f_deploy.runtime import available_cpus
from i2f_deploy.validation import field_path, problem

SIZES = ((480, 640), (600, 800), (768, 1024), (720, 960), (512, 512))
MIB = 1 << 20
Count = Annotated[int, Field(strict=True, ge=1)]


class LoadTest(BaseModel):
    """One run's settings; ``i2f-deploy loadtest`` takes its defaults from here."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    artifact_dir: Path
    users: Count = 4  # simulated people clicking at once
    images: Count = 3  # images each user posts
    clicks: Count = 50  # clicks per user on each image
    backend: Literal["onnxruntime", "openvino"] = "onnxruntime"
    threads: Count | None = None  # per graph run; None: the server's default
    graph_runs: Count | None = None  # per server (or replica); None: the server's default
    cache_mb: Count = 256  # the server's feature cache
    slack_mb: Annotated[int, Field(strict=True, ge=0)] = 256  # memory growth allowed beyond the cache budget
    max_seconds: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 900.0
    ray_replicas: Annotated[int, Field(strict=True, ge=0)] = 0  # 0: the single process
    own_images: bool = False
    server_log: Path | None = None


OPTIONS = {"ray_replicas": "--ray", "artifact_dir": "ARTIFACT_DIR"}  # options named otherwise than their setting


def default(name: str) -> Any:
    """The default of setting ``name``: what ``loadtest --help`` shows."""
    return LoadTest.model_fields[name].default


def load_test(**settings: Any) -> LoadTest:
    """``LoadTest(**settings)`` for an artifact directory of this contract, bad values refused in
    one line naming their option."""
    try:
        test = LoadTest(**settings)
    except ValidationError as exc:
        names = [str(field_path(e)[0]) if field_path(e) else "" for e in exc.errors()]
        raise InputError("; ".join(problem(error, OPTIONS.get(name, "--" + name.replace("_", "-")))
                                   for error, name in zip(exc.errors(), names))) from None
    Manifest.read(test.artifact_dir)  # an export this version runs, before the server starts
    return test


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM (graph runs already queued finish), then SIGKILL after 30 s."""
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def synthetic_image(index: int) -> np.ndarray:
    """A deterministic picture with a few filled shapes on a gradient (RGB uint8)."""
    height, width = SIZES[index % len(SIZES)]
    rng = np.random.default_rng(index)
    ramp = np.linspace(40, 200, width, dtype=np.float32)[None, :, None]
    image = np.broadcast_to(ramp, (height, width, 3)).astype(np.uint8).copy()
    for _ in range(6):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(20, width // 4)), int(rng.integers(20, height // 4)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.ellipse(image, centre, axes, float(rng.integers(0, 180)), 0, 360, colour, -1)
    return image


def png_base64(rgb: np.ndarray) -> str:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return base64.b64encode(data.tobytes()).decode()


def free_port() -> int:
    """A port nothing listens on at the moment (on 127.0.0.1)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mb(process: Any) -> float:
    """Resident memory of a ``psutil.Process``, in MiB."""
    return process.memory_info().rss / MIB


class Client:
    """One keep-alive connection to the server, JSON in and out."""

    def __init__(self, port: int, timeout: float) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        self.connection.request(method, path, payload, headers)
        response = self.connection.getresponse()
        data = response.read()
        return response.status, (json.loads(data) if data else {})

    def close(self) -> None:
        self.connection.close()


def wait_healthy(port: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode} during start-up")
        try:
            client = Client(port, 2)
            status, _ = client.call("GET", "/health")
            client.close()
            if status == 200:
                return
        except (OSError, ValueError):  # not listening yet, or not the app yet (Ray's proxy answers text)
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server did not answer /health within {timeout:.0f} s")


def user(port: int, images: list[str], clicks: int, seed: int, deadline: float, out: dict) -> None:
    """One simulated person: post each image, open a session, click, undo once, redo once."""
    rng = np.random.default_rng(seed)
    client = Client(port, 60)
    try:
        for encoded in images:
            status, info = client.call("POST", "/api/images/base64", {"image": encoded})
            if status != 200:
                out["errors"].append(f"POST /api/images/base64: {status} {info}")
                continue
            status, session = client.call("POST", "/api/sessions?mask=none&polygons=false", {"image_id": info["image_id"]})
            if status != 200:
                out["errors"].append(f"POST /api/sessions: {status} {session}")
                continue
            path = f"/api/sessions/{session['session_id']}"
            for index in range(clicks):
                if time.monotonic() > deadline:
                    out["errors"].append("stopped at --max-seconds")
                    return
                body = {"x": int(rng.integers(0, info["width"])), "y": int(rng.integers(0, info["height"])),
                        "positive": bool(index == 0 or rng.random() < 0.6)}
                start = time.perf_counter()
                status, result = client.call("POST", f"{path}/clicks?polygons=true", body)
                elapsed = (time.perf_counter() - start) * 1e3
                if status != 200:
                    out["errors"].append(f"click: {status} {result}")
                    continue
                out["latency_ms"].append(elapsed)
                out["decode_ms"].append(result["timings"]["decode_ms"])
            for operation in ("undo", "redo"):
                status, result = client.call("POST", f"{path}/{operation}?mask=none&polygons=false")
                if status != 200:
                    out["errors"].append(f"{operation}: {status} {result}")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        out["errors"].append(f"{type(exc).__name__}: {exc}")
    finally:
        client.close()


def run(test: LoadTest) -> dict:
    """Start the server, load it, stop it; the report (``report["ok"]``: the run passed)."""
    import psutil  # the serve extra: a cross-platform reading of the server's memory

    port = free_port()
    command = [sys.executable, "-m", "i2f_deploy.cli", "serve", str(test.artifact_dir), "--host", "127.0.0.1",
               "--port", str(port), "--backend", test.backend, "--cache-mb", str(test.cache_mb)]
    if test.threads:
        command += ["--threads", str(test.threads)]
    if test.graph_runs:
        command += ["--graph-runs", str(test.graph_runs)]
    if test.ray_replicas:
        command += ["--ray", "--replicas", str(test.ray_replicas)]
    log = open(test.server_log, "w") if test.server_log else subprocess.DEVNULL  # noqa: SIM115 (closed in the finally below)
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(port, process, 120)
        images = [png_base64(synthetic_image(i)) for i in range(test.images * (test.users if test.own_images else 1))]
        warm: dict[str, list] = {"latency_ms": [], "decode_ms": [], "errors": []}
        user(port, images[:1], 1, 1000, time.monotonic() + 120, warm)  # the graphs' working memory, one image
        server = psutil.Process(process.pid)
        baseline = rss_mb(server)
        peak = [baseline]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.1):
                peak.append(rss_mb(server))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out: dict[str, list] = {"latency_ms": [], "decode_ms": [], "errors": []}
        deadline = time.monotonic() + test.max_seconds
        start = time.perf_counter()
        own = test.images if test.own_images else 0
        users = [threading.Thread(target=user, args=(port, images[seed * own:seed * own + test.images], test.clicks,
                                                     seed, deadline, out))
                 for seed in range(test.users)]
        for thread in users:
            thread.start()
        for thread in users:
            thread.join()
        wall = time.perf_counter() - start
        stop.set()
        sampler.join()
        client = Client(port, 10)
        _, health = client.call("GET", "/health")
        client.close()
        peak_mb = max(*peak, rss_mb(server))
    finally:
        stop_server(process)
        if not isinstance(log, int):
            log.close()
    latency = np.array(out["latency_ms"] or [np.nan])
    models_mb = sum(p.stat().st_size for p in Path(test.artifact_dir).glob("*.onnx*")) / MIB
    report = {
        "users": test.users, "images": test.images, "clicks_per_image": test.clicks, "backend": test.backend,
        "cpus": available_cpus(), "clicks": len(out["latency_ms"]), "errors": out["errors"][:20],
        "error_count": len(out["errors"]) + len(warm["errors"]), "wall_s": round(wall, 1),
        "clicks_per_s": round(len(out["latency_ms"]) / wall, 2), "ray_replicas": test.ray_replicas, "own_images": test.own_images,
        "click_ms": {"p50": round(float(np.percentile(latency, 50)), 1), "p95": round(float(np.percentile(latency, 95)), 1),
                     "max": round(float(latency.max()), 1)},
        "decoder_ms_p50": round(float(np.median(out["decode_ms"] or [np.nan])), 1),
        "encoder_runs": health["encoder_runs"], "decoder_runs": health["decoder_runs"],
        "cache": health.get("cache"), "replicas": health.get("replicas"),
        "rss_mb": None if test.ray_replicas else {"after_warmup": round(baseline, 1), "peak": round(peak_mb, 1),
                                                    "growth": round(peak_mb - baseline, 1),
                   "cache_budget": test.cache_mb, "slack": test.slack_mb, "model_files": round(models_mb, 1)},
    }
    report["ok"] = (not out["errors"] and not warm["errors"] and report["encoder_runs"] == len(images)
                    and (test.ray_replicas > 0 or peak_mb - baseline <= test.cache_mb + test.slack_mb))
    return report
