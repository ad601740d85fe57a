"""The server as a Ray Serve application (``i2f-deploy serve --ray``): the same app on many machines.

An image costs seconds of encoder time and tens of MB of features, so its clicks must reach the
process that holds them. Two deployments:

* ``Replica`` (``--replicas N``): one ``core.Engine`` each (graphs loaded once, the feature cache
  an LRU bounded by ``--cache-mb``, the background encoder, the graph gate with clicks first).
  Every request names its image through Ray Serve's model multiplexing (the multiplexed model id
  is the image's content hash): the router sends it to a replica that holds that id, or, for a
  new one, to the replica holding the fewest.
* ``Ingress`` (one): the unchanged FastAPI app of ``api.create_app`` on a ``RayEngine``, which
  keeps what must survive a replica: the sessions (click lists, redo stacks) and each known
  image's pixels in Ray's object store (an LRU bounded by ``--cache-mb``). A replica holds only
  caches: when one dies, the next request for one of its images goes to another replica, which
  re-encodes the image from those pixels and replays the clicks the request carries.

Each replica's answer carries its counters (encoder and decoder runs, cache), which ``/health``
reports per replica.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.config import RequestRouterConfig
from ray.serve.request_router import PendingRequest, ReplicaID, RequestRouter, RunningReplica

from i2f_deploy import runtime
from i2f_deploy.contract import Manifest
from i2f_deploy.errors import I2FError
from i2f_deploy.preprocess import Geometry, geometry_for
from i2f_deploy.prompt_map import Click
from i2f_deploy.runtime.features import content_id
from i2f_deploy.serve.budget import MemoryBudget
from i2f_deploy.serve.config import MB, ServeConfig
from i2f_deploy.serve.core import Busy, Engine, ImageInfo, NotFound, Segmentation, ServingEngine, features_bytes

log = logging.getLogger("i2f_deploy.serve")

APP_NAME = "i2f-deploy"
REPLICA_REQUESTS = 128  # requests at once per replica: never so few that an image's clicks go elsewhere
INGRESS_REQUESTS = 1024  # HTTP requests at once through the ingress
ATTEMPTS = 3  # a request whose replica died is sent again (to another one)
PLACEMENTS = 1 << 16  # images whose replica the router remembers


def images_per_replica(config: ServeConfig, manifest: Manifest) -> int:
    """How many images a replica's feature cache holds: the multiplexed ids it reports."""
    return max(1, config.cache_mb * MB // features_bytes(manifest))


class ImageRouter(RequestRouter):
    """All requests for an image to one replica: the one reporting its multiplexed id, or the
    one this router sent it to; a new image to the replica holding the fewest.

    Ray's default router sends a request whose id no replica reports yet to the replica with
    the fewest ids. A replica reports a new id a fraction of a second after it got it, so an
    image's second request (its first click just after its upload) was encoded a second time
    on the other replica, and from then on its requests alternated between the two. Here the
    router remembers where it sent each image.
    """

    def initialize_state(self, **kwargs: Any) -> None:
        self._placed: OrderedDict[str, ReplicaID] = OrderedDict()

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:
        key = pending_request.metadata.multiplexed_model_id if pending_request is not None else ""
        if not key or not candidate_replicas:
            return [candidate_replicas]
        placed = self._placed.get(key)
        placed_on = Counter(self._placed.values())

        def load(replica: RunningReplica) -> tuple[int, str]:
            held = max(len(replica.multiplexed_model_ids), placed_on[replica.replica_id])
            return held, replica.replica_id.unique_id

        holders = sorted((r for r in candidate_replicas if r.replica_id == placed or key in r.multiplexed_model_ids),
                         key=lambda r: (r.replica_id != placed, load(r)))
        others = sorted((r for r in candidate_replicas if r not in holders), key=load)
        ranked = holders + others
        self._placed[key] = ranked[0].replica_id
        self._placed.move_to_end(key)
        while len(self._placed) > PLACEMENTS:
            self._placed.popitem(last=False)
        return [[replica] for replica in ranked]


class Replica:
    """One engine; every request names its image by the multiplexed id and carries its pixels."""

    def __init__(self, config: ServeConfig) -> None:
        self.engine = Engine(config)
        self.name = serve.get_replica_context().replica_id.unique_id
        # the ids this replica reports to the router, as many as its feature cache holds
        self._hold = serve.multiplexed(max_num_models_per_replica=images_per_replica(config, self.engine.manifest))(_held)

    async def _ensure(self, pixels: list) -> tuple[str, ImageInfo]:
        key = serve.get_multiplexed_model_id()
        await self._hold(key)
        try:
            return key, self.engine.info(key)
        except NotFound:  # new here, dropped from the cache, or its replica died
            return key, self.engine.add_image(await pixels[0])

    def report(self) -> dict[str, Any]:
        """This replica's counters, sent with every answer."""
        return {"replica": self.name, "pid": os.getpid(), **self.engine.stats()}

    async def add(self, pixels: list) -> tuple[ImageInfo, dict[str, Any]]:
        """Hold the image (queued for the encoder unless held already)."""
        _, info = await self._ensure(pixels)
        return info, self.report()

    async def segment(self, pixels: list, clicks: tuple[Click, ...]) -> tuple[Segmentation, dict[str, Any]]:
        """The mask after ``clicks`` (encoding the image first if this replica lacks it)."""
        key, _ = await self._ensure(pixels)
        result = await asyncio.to_thread(self.engine.segment, key, clicks)
        return result, self.report()


async def _held(image_id: str) -> str:
    """The multiplexed "model": the id alone (the features live in the engine's cache)."""
    return image_id


@dataclass(frozen=True)
class Known:
    """An image the ingress knows: its geometry and its pixels in Ray's object store."""

    image_id: str
    geometry: Geometry
    pixels: Any  # ray.ObjectRef of the RGB array
    nbytes: int


class RayEngine:
    """The engine ``api.create_app`` serves (a ``core.ServingEngine``), forwarding the work to the
    replica holding each image."""

    def __init__(self, config: ServeConfig, handle: Any) -> None:
        self.config = config
        self.manifest = runtime.read_manifest(config.artifact_dir)
        self.target_size = self.manifest.target_size
        self.model_name = str(self.manifest.config["name"])
        self._handle = handle
        self._images: OrderedDict[str, Known] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._replicas: dict[str, dict[str, Any]] = {}
        self.memory = MemoryBudget(config.image_memory_mb * MB)  # the images this ingress decodes

    # ------------------------------------------------------------------ images
    def add_image(self, rgb: np.ndarray) -> ImageInfo:
        """Keep the pixels (for any replica that will need them) and have a replica hold the image."""
        key = content_id(rgb)
        with self._lock:
            known = self._images.get(key)
        if known is None:
            height, width = rgb.shape[:2]
            known = Known(key, geometry_for(height, width, self.target_size), ray.put(rgb), rgb.nbytes)
            self._keep(known)
        return self._call("add", known)

    def _keep(self, known: Known) -> None:
        with self._lock:
            if known.image_id not in self._images:
                self._images[known.image_id] = known
                self._bytes += known.nbytes
            while self._bytes > self.config.cache_mb * MB and len(self._images) > 1:
                _, dropped = self._images.popitem(last=False)
                self._bytes -= dropped.nbytes

    def image(self, key: str) -> Known:
        """The image as the ingress knows it (404 when never posted or dropped)."""
        with self._lock:
            known = self._images.get(key)
            if known is not None:
                self._images.move_to_end(key)
        if known is None:
            raise NotFound(f"unknown image id {key!r} (never posted, or dropped from the server's images: post it again)")
        return known

    def info(self, key: str) -> ImageInfo:
        """Whether the image is encoded, asked of its replica (which holds it again if it had lost it)."""
        return self._call("add", self.image(key))

    # ------------------------------------------------------------------ clicks
    def segment(self, key: str, clicks: Sequence[Click]) -> Segmentation:
        """The whole click sequence goes with the request, so any replica can answer it."""
        return self._call("segment", self.image(key), tuple(clicks))

    def _call(self, method: str, known: Known, *args: Any) -> Any:
        """``method`` on the replica holding ``known`` (sent again if that replica dies)."""
        handle = getattr(self._handle.options(multiplexed_model_id=known.image_id), method)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                result, report = handle.remote([known.pixels], *args).result()
            except RayTaskError as exc:  # the replica refused: the engine's own error, with its status
                if isinstance(exc.cause, I2FError):
                    raise exc.cause from None
                raise
            except RayActorError as exc:  # the replica died: another one re-encodes and replays
                log.warning("replica lost during %s of image %s (attempt %d of %d): %s", method, known.image_id,
                            attempt, ATTEMPTS, type(exc).__name__)
                time.sleep(0.5 * attempt)
                continue
            with self._lock:
                self._replicas[report["replica"]] = report
            return result
        raise Busy(f"no replica answered for image {known.image_id} after {ATTEMPTS} attempts; try again shortly")

    # ------------------------------------------------------------------ state
    def stats(self) -> dict[str, object]:
        """Totals over the replicas as they last reported, and each replica's report."""
        with self._lock:
            replicas = dict(self._replicas)
            images, held = len(self._images), self._bytes
        return {"encoder_runs": sum(r["encoder_runs"] for r in replicas.values()),
                "decoder_runs": sum(r["decoder_runs"] for r in replicas.values()),
                "images": images, "image_bytes": held, "replicas": replicas}


def build(config: ServeConfig, replicas: int) -> Any:
    """The Ray Serve application: one ingress over ``replicas`` engine replicas."""
    from i2f_deploy.serve.api import create_app

    replica = serve.deployment(Replica, name="Replica", num_replicas=replicas, max_ongoing_requests=REPLICA_REQUESTS,
                               # the cores a replica keeps busy: its graph runs at once, each on --threads
                               ray_actor_options={"num_cpus": (config.threads or 1) * config.graph_runs},
                               # Ray's annotation says dict, but it takes the class (or its import path)
                               request_router_config=RequestRouterConfig(request_router_class=ImageRouter))  # type: ignore[arg-type]

    @serve.deployment(name="Ingress", num_replicas=1, max_ongoing_requests=INGRESS_REQUESTS,
                      ray_actor_options={"num_cpus": 0})
    @serve.ingress()
    class Ingress:
        def __init__(self, handle: Any) -> None:
            self.engine: ServingEngine = RayEngine(config, handle)

        def __serve_build_asgi_app__(self) -> Any:
            return create_app(self.engine)

    return Ingress.bind(replica.bind(config))  # type: ignore[attr-defined]  # serve.deployment made it a Deployment


def run(config: ServeConfig, host: str, port: int, replicas: int, address: str | None) -> None:
    """Start (or join) a Ray cluster, deploy the application and serve until interrupted."""
    from i2f_deploy.serve.server import require_web_stack, warn_if_open

    require_web_stack()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    warn_if_open(config, host)
    ray.init(address=address, include_dashboard=False)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop as on Ctrl-C: the application is deleted
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(build(config, replicas), name=APP_NAME, route_prefix="/")
        log.info("serving on http://%s:%d with %d replicas (Ctrl-C stops)", host, port, replicas)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.delete(APP_NAME)
        ray.shutdown()
