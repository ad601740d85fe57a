"""The server's settings: every limit in one place. Each is an option of ``i2f-deploy serve``, which
takes its defaults from here, and an ``I2F_``-prefixed environment variable (``I2F_CACHE_MB``,
``I2F_BACKEND``; lists as JSON, ``I2F_CORS_ORIGINS='["https://a.example"]'``), read the same way
by the command line and by the CVAT function. A command-line option wins over the variable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from i2f_deploy.errors import InputError
from i2f_deploy.validation import field_path, problem

MB = 1 << 20
ENV_PREFIX = "I2F_"
Count = Annotated[int, Field(ge=1)]
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class ServeConfig(BaseSettings):
    """What ``i2f-deploy serve`` runs with. Built by keyword; values not given come from the
    environment, then from the defaults below (the command's defaults)."""

    # validate_by_name: token=..., label_studio_url=... by their names too, not only by their variables
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid", validate_by_name=True)

    artifact_dir: Path
    backend: Literal["onnxruntime", "openvino"] = "onnxruntime"
    threads: Count | None = None  # per graph run; None: the backend's choice
    cache_mb: Count = 1024  # encoder outputs (and images waiting for the encoder) kept, in MiB
    max_upload_mb: Count = 32  # any request body; CVAT's nuclio functions accept 32 MiB
    max_pixels: Count = 40_000_000  # decoded image size (width x height)
    graph_runs: Count = 2  # graph runs at once; encodings may take all but one of them
    encoder_queue: Count = 16  # images waiting for the encoder; more are refused with 503
    max_sessions: Count = 256  # interactive sessions kept (least recently used dropped first)
    max_clicks: Count = 200  # clicks per session or per request
    click_states: Count = 4096  # prompt maps kept for undo/redo and adapters' repeated clicks
    fetch_timeout_s: Seconds = 10.0  # images Label Studio names by URL: the whole transfer, headers included
    fetch_max_mb: Count = 32
    fetch_workers: Count = 8  # Label Studio /predict calls (each fetches its image) at once, in a pool of their own
    image_memory_mb: Count = 512  # decodes and masks of images in flight; beyond it 503 (budget.MemoryBudget)
    header_timeout_s: Seconds = 10.0  # a connection must send a request's headers within this (listen.py)
    body_timeout_s: Seconds = 120.0  # ... and its body within this after them (listen.py): 32 MiB at 2.2 Mbit/s
    # Label Studio's settings are also read from the variables its ML backends are configured with
    label_studio_url: str | None = Field(  # base of relative task URLs (/data/upload/...)
        None, validation_alias=AliasChoices("I2F_LABEL_STUDIO_URL", "LABEL_STUDIO_URL", "LABEL_STUDIO_HOST"))
    label_studio_api_key: str | None = Field(
        None, validation_alias=AliasChoices("I2F_LABEL_STUDIO_API_KEY", "LABEL_STUDIO_API_KEY", "LABEL_STUDIO_ACCESS_TOKEN"))
    allow_url_prefixes: tuple[str, ...] = ()  # other image URL prefixes fetched (besides Label Studio's)
    token: str | None = Field(None, validation_alias="I2F_SERVE_TOKEN")  # every endpoint but /health requires it, when set
    basic_auth_user: str | None = Field(None, validation_alias=AliasChoices("I2F_BASIC_AUTH_USER", "BASIC_AUTH_USER"))
    basic_auth_pass: str | None = Field(None, validation_alias=AliasChoices("I2F_BASIC_AUTH_PASS", "BASIC_AUTH_PASS"))
    cors_origins: tuple[str, ...] = ()  # origins whose pages may call the API; none by default
    max_json_kb: Count = 64  # bodies of requests that carry no image (sessions, clicks, /setup)
    allowed_hosts: tuple[str, ...] = ("*",)  # Host header values answered; serve narrows it on loopback

    def __init__(self, **settings: Any) -> None:  # by keyword only: BaseSettings would take a positional one for another
        super().__init__(**settings)

    @field_validator("token")
    @classmethod
    def _token_not_blank(cls, token: str | None) -> str | None:
        if token is not None and not token.strip():
            raise ValueError("token must not be empty (leave it unset to serve without one)")
        return token

    @model_validator(mode="after")
    def _consistent(self) -> ServeConfig:
        from i2f_deploy.serve.budget import decode_bytes  # decoding needs the serve extra; the settings do not

        if (self.basic_auth_user is None) != (self.basic_auth_pass is None):
            raise ValueError("--basic-auth-user and --basic-auth-pass go together: give both or neither")
        need = decode_bytes(self.max_pixels, 1)
        if need > self.image_memory_mb * MB:
            raise ValueError(f"--image-memory-mb {self.image_memory_mb} cannot hold one image of --max-pixels "
                             f"{self.max_pixels} (about {need / MB:.0f} MiB to decode it): raise it or lower --max-pixels")
        return self

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        """(user, password) Label Studio may send instead of the token."""
        if self.basic_auth_user is None or self.basic_auth_pass is None:
            return None
        return self.basic_auth_user, self.basic_auth_pass


# command-line options whose names differ from their setting's
OPTIONS = {"fetch_timeout_s": "--fetch-timeout", "header_timeout_s": "--header-timeout",
           "body_timeout_s": "--body-timeout",
           "allow_url_prefixes": "--allow-url-prefix", "cors_origins": "--cors-origin", "allowed_hosts": "--allowed-host",
           "artifact_dir": "ARTIFACT_DIR"}


def default(name: str) -> Any:
    """The default of setting ``name``: what ``serve --help`` shows."""
    return ServeConfig.model_fields[name].default


def _variables(name: str) -> list[str]:
    """The environment variables setting ``name`` is read from, the first the one to document."""
    alias = ServeConfig.model_fields[name].validation_alias
    if alias is None:
        return [ENV_PREFIX + name.upper()]
    if isinstance(alias, str):
        return [alias]
    assert isinstance(alias, AliasChoices), "settings are read from environment variables, not from paths"
    return [str(choice) for choice in alias.choices]


def setting_names(name: str) -> str:
    """How a user sets ``name``: its option and its environment variable (``--cache-mb / I2F_CACHE_MB``)."""
    return f"{OPTIONS.get(name, '--' + name.replace('_', '-'))} / {_variables(name)[0]}"


_FIELDS = {spelling: name for name in ServeConfig.model_fields for spelling in (name, *_variables(name))}  # error locations


def serve_config(**settings: object) -> ServeConfig:
    """``ServeConfig(**settings)`` (the rest from the environment), its errors one line naming the
    option and variable of each bad setting."""
    try:
        return ServeConfig(**settings)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            path = field_path(error)
            name = _FIELDS.get(str(path[0])) if path else None
            problems.append(problem(error, setting_names(name) if name else ".".join(map(str, path))))
        raise InputError("; ".join(problems)) from None
