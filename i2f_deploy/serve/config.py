"""The server's settings: every limit in one place, each a command-line option of ``serve``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from i2f_deploy.errors import InputError
from i2f_deploy.serve.budget import MB, decode_bytes


@dataclass(frozen=True)
class ServeConfig:
    """What ``i2f-deploy serve`` runs with (defaults are the command's defaults)."""

    artifact_dir: Path
    backend: str = "onnxruntime"
    threads: int | None = None  # per graph run; None: the backend's choice
    cache_mb: int = 1024  # encoder outputs (and images waiting for the encoder) kept, in MiB
    max_upload_mb: int = 32  # any request body; CVAT's nuclio functions accept 32 MiB
    max_pixels: int = 40_000_000  # decoded image size (width x height)
    graph_runs: int = 2  # graph runs at once; encodings may take all but one of them
    encoder_queue: int = 16  # images waiting for the encoder; more are refused with 503
    max_sessions: int = 256  # interactive sessions kept (least recently used dropped first)
    max_clicks: int = 200  # clicks per session or per request
    click_states: int = 4096  # prompt maps kept for undo/redo and adapters' repeated clicks
    fetch_timeout_s: float = 10.0  # images Label Studio names by URL: the whole transfer, headers included
    fetch_max_mb: int = 32
    fetch_workers: int = 8  # Label Studio /predict calls (each fetches its image) at once, in a pool of their own
    image_memory_mb: int = 512  # decodes and masks of images in flight; beyond it 503 (budget.MemoryBudget)
    header_timeout_s: float = 10.0  # a connection must send a request's headers within this (listen.py)
    label_studio_url: str | None = None  # base of relative task URLs (/data/upload/...)
    label_studio_api_key: str | None = None
    allow_url_prefixes: tuple[str, ...] = ()  # other image URL prefixes fetched (besides Label Studio's)
    token: str | None = None  # bearer token every endpoint but /health requires, when set
    basic_auth: tuple[str, str] | None = None  # (user, password) Label Studio may send instead
    cors_origins: tuple[str, ...] = ()  # origins whose pages may call the API; none by default
    max_json_kb: int = 64  # bodies of requests that carry no image (sessions, clicks, /setup)
    allowed_hosts: tuple[str, ...] = ("*",)  # Host header values answered; serve narrows it on loopback

    def __post_init__(self) -> None:
        for name in ("cache_mb", "max_upload_mb", "max_json_kb", "max_pixels", "graph_runs", "encoder_queue",
                     "max_sessions", "max_clicks", "click_states", "fetch_max_mb", "fetch_workers", "image_memory_mb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        for name in ("fetch_timeout_s", "header_timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InputError(f"{name[:-2].replace('_', '-')} must be a finite number of seconds above 0, got {value!r}")
        need = decode_bytes(self.max_pixels, 1)
        if need > self.image_memory_mb * MB:
            raise InputError(f"--image-memory-mb {self.image_memory_mb} cannot hold one image of --max-pixels "
                             f"{self.max_pixels} (about {need / MB:.0f} MiB to decode it): raise it or lower --max-pixels")
        if self.token is not None and not self.token.strip():
            raise InputError("token must not be empty (leave it unset to serve without one)")

