"""Helpers of the browser tests: the OS Chromium driven by Playwright, and the server in this
process (so a test can hold its graph gate to make an encoding or a click visibly slow)."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def chromium() -> str | None:
    """The OS Chromium (``CHROMIUM`` overrides); CI sets I2F_REQUIRE_BROWSER=1 so that a missing
    browser fails there instead of skipping."""
    found = os.environ.get("CHROMIUM") or next(
        (path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None)
    if found is None and os.environ.get("I2F_REQUIRE_BROWSER"):
        pytest.fail("no Chromium found (apt-get install chromium, or set CHROMIUM)")
    return found


def require_chromium() -> str:
    found = chromium()
    if found is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium); .ci/run installs it")
    return found


@contextlib.contextmanager
def serving_in_process(app, port: int) -> Iterator[str]:
    """``app`` under uvicorn on 127.0.0.1:``port`` in a thread; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="page-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the in-process server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
