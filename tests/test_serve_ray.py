"""``serve --ray``: the server as a Ray Serve application on a local cluster of 2 engine replicas
(one per core, the tiny export, HTTP on 127.0.0.1), against the single-process server.

One cluster for the module (started and shut down here). The tests run in order: the routing
test leaves three sessions open, the fault test kills the replica holding some of their images.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import ray
from fastapi.testclient import TestClient
from ray import serve
from support.commands import assert_refused
from support.images import b64
from support.servers import free_port
from typer.testing import CliRunner

from i2f_deploy.cli import app
from i2f_deploy.serve.api import create_app
from i2f_deploy.serve.config import ServeConfig
from i2f_deploy.serve.core import Engine
from i2f_deploy.serve.ray_app import build

pytestmark = [pytest.mark.system, pytest.mark.ray]

CLICKS = [(200, 200, True), (120, 90, False), (330, 250, True), (260, 150, True)]
FIELDS = ("clicks", "mask", "polygons", "num_routed", "can_undo", "can_redo")


def config(artifact_dir: Path) -> ServeConfig:
    return ServeConfig(artifact_dir=artifact_dir, threads=1, graph_runs=1, cache_mb=256)  # a replica per core


@pytest.fixture(scope="module")
def images(golden_rgb: np.ndarray) -> list[np.ndarray]:
    """Three pictures (three content ids) that all take CLICKS."""
    rgb = golden_rgb
    return [rgb, np.ascontiguousarray(rgb[:, ::-1]), np.ascontiguousarray(rgb[20:380, 10:560])]


@pytest.fixture(scope="module")
def single(tiny_artifacts: Path) -> Iterator[TestClient]:
    """The single-process server, for the expected answers."""
    engine = Engine(config(tiny_artifacts))
    yield TestClient(create_app(engine))
    engine.close()


@pytest.fixture(scope="module")
def cluster(tiny_artifacts: Path) -> Iterator[httpx.Client]:
    """The application with 2 replicas on a local Ray cluster of 2 CPUs, HTTP on loopback."""
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build(config(tiny_artifacts), replicas=2), name="i2f-test", route_prefix="/")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            yield http
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def sessions() -> dict[int, str]:
    """Session id per image, shared by the two tests."""
    return {}


def post(http: httpx.Client | TestClient, path: str, body: dict | None = None) -> dict:
    response = http.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def replicas(http: httpx.Client) -> dict[str, dict]:
    return http.get("/health").json()["replicas"]


def expected(single: TestClient, image: np.ndarray, clicks: list[tuple[int, int, bool]], undo: int = 0) -> list[dict]:
    """The single-process server's answers to posting ``image``, ``clicks`` and ``undo`` undos."""
    info = post(single, "/api/images/base64", {"image": b64(image)})
    session = post(single, "/api/sessions", {"image_id": info["image_id"]})["session_id"]
    answers = [post(single, f"/api/sessions/{session}/clicks", {"x": x, "y": y, "positive": p}) for x, y, p in clicks]
    return answers + [post(single, f"/api/sessions/{session}/undo") for _ in range(undo)]


def same(answer: dict, reference: dict) -> bool:
    return all(answer[name] == reference[name] for name in FIELDS)


def test_clicks_go_to_the_replica_holding_the_image(cluster: httpx.Client, single: TestClient,
                                                    images: list[np.ndarray], sessions: dict[int, str]) -> None:
    for index, image in enumerate(images):
        info = post(cluster, "/api/images/base64", {"image": b64(image)})
        assert info["queued"]
        sessions[index] = post(cluster, "/api/sessions", {"image_id": info["image_id"]})["session_id"]
    answers: dict[int, list[dict]] = {index: [] for index in sessions}
    for round_ in range(len(CLICKS)):  # round robin over the images, as annotators interleave
        for index, session in sessions.items():
            x, y, positive = CLICKS[round_]
            answers[index].append(post(cluster, f"/api/sessions/{session}/clicks", {"x": x, "y": y, "positive": positive}))
        if round_ == 0:
            assert sum(r["encoder_runs"] for r in replicas(cluster).values()) == 3
    for index, image in enumerate(images):
        reference = expected(single, image, CLICKS)
        assert all(same(a, r) for a, r in zip(answers[index], reference, strict=True))
        assert all(a["timings"]["decoder_runs"] == 1 for a in answers[index])  # never replayed elsewhere
    reports = replicas(cluster)
    assert len(reports) == 2
    assert sorted(r["encoder_runs"] for r in reports.values()) == [1, 2]  # each image encoded once, spread
    assert sum(r["decoder_runs"] for r in reports.values()) == 3 * len(CLICKS)

    # a tool re-sending the picture on every click (CVAT) reaches the replica holding it
    for negative in ([], [[120, 90]]):
        result = post(cluster, "/cvat/interactor", {"image": b64(images[0]), "pos_points": [[200, 200]], "neg_points": negative})
        assert np.array(result["mask"]).shape == images[0].shape[:2]
    assert sum(r["encoder_runs"] for r in replicas(cluster).values()) == 3


def test_a_killed_replica_loses_only_its_caches(cluster: httpx.Client, single: TestClient,
                                               images: list[np.ndarray], sessions: dict[int, str]) -> None:
    assert len(sessions) == 3, "runs after test_clicks_go_to_the_replica_holding_the_image"
    before = replicas(cluster)
    victim = max(before.values(), key=lambda r: r["cache"]["encoded"])  # the replica holding two images
    os.kill(victim["pid"], signal.SIGKILL)
    start = time.monotonic()
    extra = (150, 300, False)
    answers = {index: post(cluster, f"/api/sessions/{session}/clicks", {"x": extra[0], "y": extra[1], "positive": extra[2]})
               for index, session in sessions.items()}
    undone = {index: post(cluster, f"/api/sessions/{session}/undo") for index, session in sessions.items()}
    print(f"the first clicks after the kill answered in {time.monotonic() - start:.1f} s")
    for index, image in enumerate(images):
        *_, last, after_undo = expected(single, image, [*CLICKS, extra], undo=1)
        assert same(answers[index], last) and same(undone[index], after_undo)
    after = replicas(cluster)
    survivors = {name: report for name, report in after.items() if name != victim["replica"]}
    encoded_again = sum(r["encoder_runs"] for r in survivors.values()) - sum(
        r["encoder_runs"] for name, r in before.items() if name != victim["replica"])
    assert encoded_again == victim["cache"]["encoded"]  # its images only, each once


def test_ray_options_need_ray(tiny_artifacts: Path) -> None:
    result = CliRunner().invoke(app, ["serve", str(tiny_artifacts), "--replicas", "2"])
    assert_refused(result, "--replicas and --address need --ray")


def test_ray_flag_without_ray_installed(tiny_artifacts: Path) -> None:
    code = ("import sys; sys.modules['ray'] = None  # as if Ray were not installed\n"
            "from i2f_deploy.cli import main; sys.argv = ['i2f-deploy', *sys.argv[1:]]; main()")
    process = subprocess.run([sys.executable, "-c", code, "serve", str(tiny_artifacts), "--ray"],
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 2, process.stderr
    assert process.stderr.strip().splitlines() == ["error: this command needs ray, which is not installed: pip install 'i2f-deploy[ray]'"]
