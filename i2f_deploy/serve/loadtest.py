"""A bounded load test of ``i2f-deploy serve`` on this machine's loopback interface.

``python -m i2f_deploy.serve.loadtest ARTIFACT_DIR`` starts the server on 127.0.0.1 (a free port),
then ``--users`` threads each post the same ``--images`` synthetic images (so every image after
the first user's is a cache hit: the encoder runs once per image) and click ``--clicks`` times on
each, one request at a time like a person. It reports the per-click latency seen by the clients
(p50, p95, max), the server's decoder time, errors, encoder runs, and the server's resident memory
(after start-up and one warm-up click, i.e. the models and their working memory, and the peak
under load) against ``--cache-mb``.
``--ray N`` runs the server as a Ray Serve application with N replicas on a local Ray cluster
(its memory is then spread over the replicas' processes and not measured), and ``--own-images``
gives each user images of its own, so that users work on different images at once (shared
images keep them all on one image, hence on one replica).
Exit status 1 if any request failed, the encoder ran more than once per image, or the peak
memory grew past the cache budget plus ``--slack-mb``. Everything is bounded: a fixed number of
requests, each with a timeout, and ``--max-seconds`` overall.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

SIZES = ((480, 640), (600, 800), (768, 1024), (720, 960), (512, 512))


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
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of a process from /proc (VmRSS now, VmHWM its peak), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not found for process {pid}")


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


def run(args: argparse.Namespace) -> dict:
    port = free_port()
    command = [sys.executable, "-m", "i2f_deploy.cli", "serve", str(args.artifact_dir), "--host", "127.0.0.1",
               "--port", str(port), "--backend", args.backend, "--cache-mb", str(args.cache_mb)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.graph_runs:
        command += ["--graph-runs", str(args.graph_runs)]
    if args.ray:
        command += ["--ray", "--replicas", str(args.ray)]
    log = open(args.server_log, "w") if args.server_log else subprocess.DEVNULL
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(port, process, 120)
        images = [png_base64(synthetic_image(i)) for i in range(args.images * (args.users if args.own_images else 1))]
        warm: dict[str, list] = {"latency_ms": [], "decode_ms": [], "errors": []}
        user(port, images[:1], 1, 1000, time.monotonic() + 120, warm)  # the graphs' working memory, one image
        baseline = rss_mb(process.pid)
        peak = [baseline]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.1):
                peak.append(rss_mb(process.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out: dict[str, list] = {"latency_ms": [], "decode_ms": [], "errors": []}
        deadline = time.monotonic() + args.max_seconds
        start = time.perf_counter()
        own = args.images if args.own_images else 0
        users = [threading.Thread(target=user, args=(port, images[seed * own:seed * own + args.images], args.clicks,
                                                     seed, deadline, out))
                 for seed in range(args.users)]
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
        peak_mb = max(max(peak), rss_mb(process.pid, "VmHWM"))
    finally:
        stop_server(process)
    latency = np.array(out["latency_ms"] or [np.nan])
    models_mb = sum(p.stat().st_size for p in Path(args.artifact_dir).glob("*.onnx*")) / (1 << 20)
    report = {
        "users": args.users, "images": args.images, "clicks_per_image": args.clicks, "backend": args.backend,
        "cpus": len(os.sched_getaffinity(0)), "clicks": len(out["latency_ms"]), "errors": out["errors"][:20],
        "error_count": len(out["errors"]) + len(warm["errors"]), "wall_s": round(wall, 1),
        "clicks_per_s": round(len(out["latency_ms"]) / wall, 2), "ray_replicas": args.ray, "own_images": args.own_images,
        "click_ms": {"p50": round(float(np.percentile(latency, 50)), 1), "p95": round(float(np.percentile(latency, 95)), 1),
                     "max": round(float(latency.max()), 1)},
        "decoder_ms_p50": round(float(np.median(out["decode_ms"] or [np.nan])), 1),
        "encoder_runs": health["encoder_runs"], "decoder_runs": health["decoder_runs"],
        "cache": health.get("cache"), "replicas": health.get("replicas"),
        "rss_mb": None if args.ray else {"after_warmup": round(baseline, 1), "peak": round(peak_mb, 1), "growth": round(peak_mb - baseline, 1),
                   "cache_budget": args.cache_mb, "slack": args.slack_mb, "model_files": round(models_mb, 1)},
    }
    report["ok"] = (not out["errors"] and not warm["errors"] and report["encoder_runs"] == len(images)
                    and (args.ray > 0 or peak_mb - baseline <= args.cache_mb + args.slack_mb))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m i2f_deploy.serve.loadtest", description=__doc__.split("\n\n")[0])
    parser.add_argument("artifact_dir", type=Path, help="Directory written by i2f-deploy export.")
    parser.add_argument("--users", type=int, default=4, help="Simulated people clicking at once.")
    parser.add_argument("--images", type=int, default=3, help="Images each user posts (the same ones for every user).")
    parser.add_argument("--clicks", type=int, default=50, help="Clicks per user on each image.")
    parser.add_argument("--backend", default="onnxruntime", help="onnxruntime or openvino.")
    parser.add_argument("--threads", type=int, default=None, help="Threads per graph run (default: the backend's choice).")
    parser.add_argument("--graph-runs", type=int, default=None, help="Graph runs at once per server (or replica) (default: the server's).")
    parser.add_argument("--cache-mb", type=int, default=256, help="The server's feature cache budget in MiB.")
    parser.add_argument("--slack-mb", type=int, default=256, help="Memory growth allowed beyond the cache budget (sessions, buffers).")
    parser.add_argument("--max-seconds", type=float, default=900, help="Stop clicking after this long.")
    parser.add_argument("--ray", type=int, default=0, metavar="N", help="Serve with --ray --replicas N on a local Ray cluster (0: the single process).")
    parser.add_argument("--own-images", action="store_true", help="Each user posts images of its own (default: all users post the same ones).")
    parser.add_argument("--json", type=Path, default=None, help="Also write the report here.")
    parser.add_argument("--server-log", type=Path, default=None, help="Write the server's output here.")
    args = parser.parse_args(argv)
    for name in ("users", "images", "clicks", "cache_mb"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not (Path(args.artifact_dir) / "manifest.json").is_file():
        parser.error(f"not an i2f-deploy artifact directory (no manifest.json): {args.artifact_dir}")
    report = run(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
