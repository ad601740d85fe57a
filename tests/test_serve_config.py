"""The server's settings (``serve/config.py``): one model read by ``serve``, the CVAT function
and ``I2F_`` environment variables; bad values refused in one line naming the option and the
variable; ``serve --help`` shows the model's defaults. No server starts: ``run`` is replaced."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.commands import assert_refused
from typer.testing import CliRunner

from i2f_deploy.cli import app
from i2f_deploy.errors import InputError
from i2f_deploy.serve import server
from i2f_deploy.serve.config import ServeConfig, serve_config

pytestmark = pytest.mark.unit


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[ServeConfig, str, int]]:
    """What ``serve`` would run with (``server.run`` records its arguments instead of serving)."""
    calls: list[tuple[ServeConfig, str, int]] = []
    monkeypatch.setattr(server, "run", lambda config, host, port: calls.append((config, host, port)))
    return calls


def serve(artifact_dir: Path, *options: str):
    return CliRunner().invoke(app, ["serve", str(artifact_dir), *options])


def test_an_environment_variable_sets_a_setting_and_an_option_wins(monkeypatch, started, tmp_path) -> None:
    monkeypatch.setenv("I2F_CACHE_MB", "77")
    monkeypatch.setenv("I2F_FETCH_TIMEOUT_S", "2.5")
    monkeypatch.setenv("I2F_CORS_ORIGINS", '["https://tool.example"]')
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:8080")
    assert serve(tmp_path).exit_code == 0
    assert serve(tmp_path, "--cache-mb", "5", "--max-clicks", "9").exit_code == 0
    (from_env, _, _), (from_options, _, _) = started
    assert (from_env.cache_mb, from_env.fetch_timeout_s, from_env.cors_origins) == (77, 2.5, ("https://tool.example",))
    assert from_env.label_studio_url == "http://127.0.0.1:8080" and from_env.max_clicks == 200
    assert (from_options.cache_mb, from_options.max_clicks, from_options.fetch_timeout_s) == (5, 9, 2.5)


def test_defaults_are_the_models_and_loopback_narrows_the_hosts(monkeypatch, started, tmp_path) -> None:
    for name in ServeConfig.model_fields:
        monkeypatch.delenv(f"I2F_{name.upper()}", raising=False)
    assert serve(tmp_path).exit_code == 0
    assert serve(tmp_path, "--host", "0.0.0.0", "--port", "8123").exit_code == 0
    monkeypatch.setenv("I2F_ALLOWED_HOSTS", '["annotate.example"]')
    assert serve(tmp_path).exit_code == 0
    (loopback, _, _), (everywhere, host, port), (named, _, _) = started
    defaults = ServeConfig(artifact_dir=tmp_path, allowed_hosts=("*",))
    assert loopback.model_dump(exclude={"allowed_hosts"}) == defaults.model_dump(exclude={"allowed_hosts"})
    assert loopback.allowed_hosts == server.LOOPBACK_NAMES
    assert (everywhere.allowed_hosts, host, port) == (("*",), "0.0.0.0", 8123)
    assert named.allowed_hosts == ("annotate.example",)


def test_list_options_take_comma_lists(started, tmp_path) -> None:
    assert serve(tmp_path, "--cors-origin", "https://a.example,https://b.example", "--allowed-host", "a.example, b.example",
                 "--allow-url-prefix", "https://files.example/tasks/").exit_code == 0
    ((config, _, _),) = started
    assert config.cors_origins == ("https://a.example", "https://b.example")
    assert config.allowed_hosts == ("a.example", "b.example")
    assert config.allow_url_prefixes == ("https://files.example/tasks/",)
    assert_refused(serve(tmp_path, "--allowed-host", ","), "--allowed-host: give at least one value")


def test_help_shows_the_models_defaults() -> None:
    text = " ".join(CliRunner().invoke(app, ["serve", "--help"]).output.split())
    for option, name in (("--cache-mb", "cache_mb"), ("--max-pixels", "max_pixels"), ("--fetch-timeout", "fetch_timeout_s"),
                         ("--backend", "backend"), ("--max-json-kb", "max_json_kb")):
        default = ServeConfig.model_fields[name].default
        assert f"[default: {default}]" in text.split(f"{option} <", 1)[1].split(" --", 1)[0], option


@pytest.mark.parametrize(("options", "environment", "message"), [
    (["--max-sessions", "0"], {}, "--max-sessions / I2F_MAX_SESSIONS must be at least 1, got 0"),
    (["--fetch-timeout", "inf"], {}, "--fetch-timeout / I2F_FETCH_TIMEOUT_S must be finite, got inf"),
    ([], {"I2F_GRAPH_RUNS": "two"}, "--graph-runs / I2F_GRAPH_RUNS must be an integer, got 'two'"),
    ([], {"I2F_BACKEND": "tensorrt"}, "--backend / I2F_BACKEND must be one of 'onnxruntime' or 'openvino', got 'tensorrt'"),
    (["--basic-auth-user", "u"], {}, "--basic-auth-user and --basic-auth-pass go together"),
    (["--token", " "], {}, "token must not be empty"),
    (["--max-pixels", "400000000"], {}, "--image-memory-mb 512 cannot hold one image of --max-pixels 400000000"),
])
def test_bad_values_are_refused_naming_the_setting(monkeypatch, started, tmp_path, options, environment, message) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert_refused(serve(tmp_path, *options), message)
    assert started == []


def test_the_settings_are_built_by_keyword_only(tmp_path) -> None:
    with pytest.raises(TypeError):
        ServeConfig(tmp_path)  # type: ignore[misc]
    with pytest.raises(InputError, match="--threads / I2F_THREADS must be at least 1, got 0; "
                                         "--cache-mb / I2F_CACHE_MB must be at least 1, got -1"):
        serve_config(artifact_dir=tmp_path, cache_mb=-1, threads=0)
