"""Every endpoint of the OpenAPI schema fuzzed by schemathesis against the real server (loopback,
token set): no answer is a 5xx, and ``/health`` still answers afterwards. Bounded: a fixed number
of derandomized examples per operation (about a minute on 2 cores)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from support.servers import running_server

pytestmark = pytest.mark.system

TOKEN = "fuzz-token-" + "y" * 16
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXAMPLES = 15


@pytest.fixture(scope="module")
def server_url(tiny_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("fuzz") / "server.log"
    with running_server(tiny_artifacts, log, "--threads", "2", "--token", TOKEN, "--max-upload-mb", "2",
                        "--max-pixels", "1000000") as (url, _):
        yield url
        assert "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture(scope="module")
def api_schema(server_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{server_url}/openapi.json", headers=AUTH)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_endpoint_answers_5xx(case: schemathesis.Case, server_url: str) -> None:
    response = case.call(base_url=server_url, headers=AUTH, timeout=60)
    assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text[:500]}"


def test_health_after_fuzzing(server_url: str) -> None:
    assert httpx.get(f"{server_url}/health", timeout=30).json()["status"] == "UP"
