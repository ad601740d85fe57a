"""The click as the user feels it: ``InteractiveSession.add_click`` in process ("session click")
and the server's click endpoint over loopback ("HTTP click"), each with the graph's own time for
that click beside it (``Row.graph_ms``), so the time spent outside the graph is a column
(``Row.outside_ms``: the median of each click's own difference, steadier than the difference of
the medians on a busy machine).

The image is a photo of ``PHOTO_WIDTH`` x ``PHOTO_HEIGHT`` (the bench photo, enlarged): the masks,
outlines and PNGs a click makes grow with the image, not with the target size. A scenario's clicks
are the decoder scenario's (``scenarios.scenario_clicks``) mapped to the photo's pixels; each timed
run is the scenario's last click, from the state after the clicks before it (reset and replayed
untimed), so every timed click is one decoder run, never a state taken from the history.

* session: the backend's graphs as ``InteractiveSession`` takes them (its default backend
  options), its encoder outputs computed once; the graph time is the decoder's ``run``;
* HTTP: ``i2f-deploy serve`` in a process of its own on 127.0.0.1 (the backend's defaults), the
  photo posted as a PNG and encoded there; the click is posted as the web page posts it (a 1-bit
  PNG mask and the polygons, the defaults) and its JSON answer read; the graph time is the answer's
  ``decode_ms``.

A backend's session and HTTP clicks are timed in turns like every other row
(``runner._round_robin``'s rule), each timed click followed by an untimed pause; the backends one
after the other.
"""

from __future__ import annotations

import gc
import http.client
import importlib.util
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from i2f_deploy import runtime
from i2f_deploy.bench.memory import PeakSampler
from i2f_deploy.bench.runner import Row, Settings, Target, quantiles
from i2f_deploy.bench.scenarios import scenario_clicks
from i2f_deploy.contract import IMAGE, IMAGE_FEATURES
from i2f_deploy.model.inter2former import Inter2Former
from i2f_deploy.preprocess import geometry_for, preprocess
from i2f_deploy.prompt_map import Click
from i2f_deploy.runtime import GraphRunner
from i2f_deploy.runtime.options import interactive_options
from i2f_deploy.runtime.session import InteractiveSession
from i2f_deploy.samples import builtin_samples

PHOTO_WIDTH, PHOTO_HEIGHT = 1536, 1024
SESSION, HTTP = "session click", "HTTP click"
SERVER_START_S = 300.0  # loading a base export's graphs and encoding the photo, on a busy machine


def photo() -> np.ndarray:
    """The bench photo enlarged to ``PHOTO_WIDTH`` x ``PHOTO_HEIGHT`` (RGB uint8)."""
    image = builtin_samples(["coffee-cup"])[0].image
    return cv2.resize(image, (PHOTO_WIDTH, PHOTO_HEIGHT), interpolation=cv2.INTER_CUBIC)


def photo_clicks(scenario: str, size: int) -> list[Click]:
    """Scenario ``scenario``'s clicks at target ``size``, in the photo's pixels: the pixel each
    target pixel's centre falls in (``to_target_click`` maps it back to that target pixel)."""
    geometry = geometry_for(PHOTO_HEIGHT, PHOTO_WIDTH, size)
    return [Click(x=min(PHOTO_WIDTH - 1, int((c.x + 0.5) / geometry.scale)),
                  y=min(PHOTO_HEIGHT - 1, int((c.y + 0.5) / geometry.scale)), positive=c.positive)
            for c in scenario_clicks(scenario, size)]


class TimedRunner:
    """A runner that adds up the milliseconds of its runs: the graph's share of a click."""

    def __init__(self, runner: GraphRunner) -> None:
        self.runner = runner
        self.input_names, self.output_names = runner.input_names, runner.output_names
        self.input_shapes, self.kernels, self.concurrent = runner.input_shapes, runner.kernels, runner.concurrent
        self.ms = 0.0

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        try:
            return self.runner.run(inputs)
        finally:
            self.ms += (time.perf_counter() - start) * 1e3


class FixedEncoder:
    """An encoder that answers with outputs computed before: the session's one encoding is not
    part of a click, and a base encoder per backend would double the bench's memory."""

    def __init__(self, outputs: dict[str, np.ndarray]) -> None:
        self.outputs = outputs
        self.input_names: tuple[str, ...] = (IMAGE,)
        self.output_names = tuple(outputs)
        self.input_shapes: dict[str, tuple] = {}
        self.kernels, self.concurrent = "function-body", True

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.outputs


@dataclass
class ClickContender:
    """One way a user clicks: ``prepare`` (untimed) brings it to the state before the timed click,
    ``click`` makes that click and returns the graph's milliseconds in it."""

    backend: str
    part: str
    kernels: str | None
    prepare: Callable[[Sequence[Click]], None]
    click: Callable[[Click], float]
    close: Callable[[], None] = lambda: None


def session_contender(artifact_dir: Path, backend: str, threads: int, size: int,
                      features: dict[str, np.ndarray], image: np.ndarray) -> ClickContender:
    """``InteractiveSession`` on ``backend``'s decoder, with ``features`` as the photo's encoding."""
    decoder = runtime.load(artifact_dir, "decoder", backend, threads, options=interactive_options(backend),
                           verify=False)
    timed = TimedRunner(decoder)
    session = InteractiveSession(encoder=FixedEncoder(decoder.with_derived(features)), decoder=timed,
                                 target_size=size)
    session.set_image(image)

    def prepare(before: Sequence[Click]) -> None:
        session.reset()
        for click in before:
            session.add_click(click.x, click.y, click.positive)

    def click(last: Click) -> float:
        timed.ms = 0.0
        session.add_click(last.x, last.y, last.positive)
        return timed.ms

    return ClickContender(backend, SESSION, decoder.kernels, prepare, click, session.close)


def http_contender(artifact_dir: Path, backend: str, threads: int, image: np.ndarray) -> ClickContender:
    """``i2f-deploy serve`` on ``backend`` in its own process, a session on the posted photo."""
    from i2f_deploy.loadtest import Client, free_port, png_base64, stop_server, wait_healthy

    port = free_port()
    command = [sys.executable, "-m", "i2f_deploy.cli", "serve", str(artifact_dir), "--host", "127.0.0.1",
               "--port", str(port), "--backend", backend, "--threads", str(threads)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = Client(port, SERVER_START_S)
    try:
        wait_healthy(port, process, SERVER_START_S)
        _, posted = client.call("POST", "/api/images/base64", {"image": png_base64(image)})
        quiet = "mask=none&polygons=false"  # the untimed calls ask for nothing
        _, created = client.call("POST", f"/api/sessions?{quiet}", {"image_id": posted["image_id"]})  # waits for the encoder
        _, health = client.call("GET", "/health")
    except BaseException:
        client.close()
        stop_server(process)
        raise
    path = f"/api/sessions/{created['session_id']}"

    def call(method: str, url: str, body: dict | None = None) -> dict:
        try:
            status, answer = client.call(method, url, body)
        except (http.client.RemoteDisconnected, ConnectionError):  # an idle keep-alive closed by the server
            client.close()  # (while other contenders ran); a browser opens another one, so do we
            status, answer = client.call(method, url, body)
        if status != 200:
            raise RuntimeError(f"the server answered {status} to {method} {url}: {answer}")
        return answer

    def prepare(before: Sequence[Click]) -> None:  # also reopens the connection if it was closed
        call("POST", f"{path}/reset?{quiet}")
        for click in before:
            call("POST", f"{path}/clicks?{quiet}", {"x": click.x, "y": click.y, "positive": click.positive})

    def click(last: Click) -> float:  # as the web page asks: the PNG mask and the polygons
        answer = call("POST", f"{path}/clicks", {"x": last.x, "y": last.y, "positive": last.positive})
        return float(answer["timings"]["decode_ms"])

    def close() -> None:
        client.close()
        stop_server(process)

    return ClickContender(backend, HTTP, str(health.get("kernels")), prepare, click, close)


def _clicks_in_turns(contenders: list[ClickContender], before: Sequence[Click], last: Click, warmup: int,
                     repeat: int, settle_ms: int) -> tuple[list[list[float]], list[list[float]], float]:
    """Wall and graph milliseconds of ``last`` per contender, timed in turns; the peak RSS (MB)
    of this process meanwhile (the server's is its own)."""
    for contender in contenders:
        for _ in range(warmup):
            contender.prepare(before)
            contender.click(last)
    walls: list[list[float]] = [[] for _ in contenders]
    graphs: list[list[float]] = [[] for _ in contenders]
    with PeakSampler() as peak:
        for _ in range(repeat):
            for index, contender in enumerate(contenders):
                contender.prepare(before)
                time.sleep(settle_ms / 1000)
                start = time.perf_counter()
                graph_ms = contender.click(last)
                walls[index].append((time.perf_counter() - start) * 1e3)
                graphs[index].append(graph_ms)
                time.sleep(settle_ms / 1000)
    return walls, graphs, peak.mb


def web_stack_installed() -> bool:
    """Whether ``i2f-deploy serve`` can run here (the serve extra)."""
    from i2f_deploy.serve.server import WEB_STACK

    return all(importlib.util.find_spec(name) is not None for name in WEB_STACK)


def photo_features(model: Inter2Former, size: int, image: np.ndarray) -> dict[str, np.ndarray]:
    """The photo's five official encoder features from the PyTorch model (the graphs derive the rest)."""
    with torch.no_grad():
        embeddings, edge_maps = model.encode(torch.from_numpy(preprocess(image, size)[0]))
    return dict(zip(IMAGE_FEATURES, [t.numpy() for t in (embeddings, *edge_maps)]))


def _backend_click_rows(target: Target, backend: str, threads: int, features: dict[str, np.ndarray],
                        image: np.ndarray, scenarios: list[str], settings: Settings, serving: bool) -> list[Row]:
    """``backend``'s session click and HTTP click (``serving``) per scenario, in turns."""
    rows: list[Row] = []
    contenders: list[ClickContender] = []
    try:
        contenders.append(session_contender(target.artifact_dir, backend, threads, target.size, features, image))
        if serving:
            contenders.append(http_contender(target.artifact_dir, backend, threads, image))
        for scenario in scenarios:
            *before, last = photo_clicks(scenario, target.size)
            walls, graphs, peak = _clicks_in_turns(contenders, before, last, settings.warmup, settings.repeat,
                                                   settings.settle_ms)
            for contender, wall, graph in zip(contenders, walls, graphs):
                median, p10, p90 = quantiles(wall)
                rows.append(Row(target.size, contender.backend, target.routing, contender.part, scenario, threads,
                                median, p10, p90, peak, graph_ms=float(np.median(graph)),
                                outside_ms=float(np.median(np.subtract(wall, graph))),
                                settings={"threads": threads, "repeat": settings.repeat, "warmup": settings.warmup,
                                          "settle_ms": settings.settle_ms, "kernels": contender.kernels,
                                          "options": interactive_options(contender.backend).model_dump(),
                                          "image": f"{PHOTO_WIDTH}x{PHOTO_HEIGHT}"}))
    finally:
        for contender in contenders:
            contender.close()
    return rows


def click_rows(targets: list[Target], backends: list[str], scenarios: list[str], threads: list[int],
               settings: Settings, progress: Callable[[str], None]) -> list[Row]:
    """Per f32 target and thread count, a session-click and an HTTP-click row of each graph
    backend per scenario (HTTP when the serve extra is installed). A backend's two are timed in
    turns; the backends one after the other, each freed before the next loads (at 2048 two servers
    and two sessions beside the bench's own graphs exceeded 24 GB)."""
    graph_backends = [b for b in backends if b != "torch"]
    serving = web_stack_installed()
    if graph_backends and not serving:
        progress("the serve extra is not installed: no HTTP click rows")
    image = photo()
    rows: list[Row] = []
    for target in [t for t in targets if t.precision == "f32"] if graph_backends else []:
        features = photo_features(target.model(target.routing), target.size, image)
        for count in threads:
            for backend in graph_backends:
                progress(f"{target.size} clicks on a {PHOTO_WIDTH}x{PHOTO_HEIGHT} photo: {backend} "
                         f"in a session{' and over HTTP' if serving else ''}, {count} thread(s)")
                rows += _backend_click_rows(target, backend, count, features, image, scenarios, settings, serving)
                gc.collect()
    return rows
