"""The web page in a real headless Chromium (the OS package, driven by Playwright): open an image,
click, the overlay appears, undo clears it; a screenshot is kept as a test artifact
(``test-artifacts/serve-page.png``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from serve_helpers import running_server

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def chromium() -> str | None:
    """The OS Chromium (``CHROMIUM`` overrides); CI sets I2F_REQUIRE_BROWSER=1 so that a missing
    browser fails there instead of skipping."""
    found = os.environ.get("CHROMIUM") or next(
        (path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None)
    if found is None and os.environ.get("I2F_REQUIRE_BROWSER"):
        pytest.fail("no Chromium found (apt-get install chromium, or set CHROMIUM)")
    return found


def test_page_click_overlay_undo(tiny_artifacts: Path, golden_image_path: Path, tmp_path: Path) -> None:
    browser_path = chromium()
    if browser_path is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium); .ci/run installs it")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with running_server(tiny_artifacts, tmp_path / "server.log", "--threads", "2") as (url, _), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url)
            page.set_input_files("#file", str(golden_image_path))
            page.wait_for_selector("#stage:not([hidden])")
            overlay = page.locator("#overlay")
            page.wait_for_function("document.body.dataset.state === 'ready' && document.querySelector('#overlay').dataset.clicks === '0'")
            box = overlay.bounding_box()
            overlay.click(position={"x": box["width"] * 200 / 600, "y": box["height"] * 200 / 400})
            page.wait_for_function("document.querySelector('#overlay').dataset.clicks === '1'", timeout=60_000)
            pixels = int(overlay.get_attribute("data-mask-pixels"))
            assert pixels > 0
            drawn = page.evaluate("""() => {
                const c = document.querySelector('#overlay');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; }""")
            assert drawn >= pixels  # mask, outline and click marker are on the overlay
            overlay.click(position={"x": box["width"] * 120 / 600, "y": box["height"] * 90 / 400}, button="right")
            page.wait_for_function("document.querySelector('#overlay').dataset.clicks === '2'", timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "serve-page.png"))
            page.click("#undo")
            page.wait_for_function("document.querySelector('#overlay').dataset.clicks === '1'", timeout=60_000)
            assert int(overlay.get_attribute("data-mask-pixels")) == pixels  # back to the first click's mask
            page.click("#undo")
            page.wait_for_function("document.querySelector('#overlay').dataset.clicks === '0'", timeout=60_000)
            assert overlay.get_attribute("data-mask-pixels") == "0"
            assert page.locator("#redo").is_enabled() and not page.locator("#undo").is_enabled()
            page.screenshot(path=str(ARTIFACTS / "serve-page-undone.png"))
            assert errors == [] and "error" not in (page.get_attribute("#status", "class") or "")
        finally:
            browser.close()
    assert (ARTIFACTS / "serve-page.png").stat().st_size > 10_000
