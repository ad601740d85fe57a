"""The server's settings: every limit in one place, each a command-line option of ``serve``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from i2f_deploy.errors import InputError

MB = 1 << 20


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
    fetch_timeout_s: float = 10.0  # images Label Studio names by URL
    fetch_max_mb: int = 32
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
                     "max_sessions", "max_clicks", "click_states", "fetch_max_mb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not self.fetch_timeout_s > 0:
            raise InputError(f"fetch-timeout must be positive, got {self.fetch_timeout_s!r}")
        if self.token is not None and not self.token.strip():
            raise InputError("token must not be empty (leave it unset to serve without one)")

