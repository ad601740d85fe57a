"""The web page in a real headless Chromium (the OS package, driven by Playwright): open an image,
click, the overlay appears, undo clears it; a screenshot is kept as a test artifact
(``test-artifacts/serve-page.png``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.browser import ARTIFACTS, require_chromium
from support.servers import running_server

pytestmark = pytest.mark.system


def test_page_click_overlay_undo(tiny_artifacts: Path, golden_image_path: Path, tmp_path: Path) -> None:
    browser_path = require_chromium()
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
            box = page.locator("#image").bounding_box()  # the 600x400 image as shown
            page.mouse.click(box["x"] + box["width"] * 200 / 600, box["y"] + box["height"] * 200 / 400)
            page.wait_for_function("document.querySelector('#overlay').dataset.clicks === '1'", timeout=60_000)
            pixels = int(overlay.get_attribute("data-mask-pixels"))
            assert pixels > 0
            drawn = page.evaluate("""() => {
                const c = document.querySelector('#masks');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; }""")
            assert drawn == pixels  # the mask layer holds the mask, and only it
            page.mouse.click(box["x"] + box["width"] * 120 / 600, box["y"] + box["height"] * 90 / 400, button="right")
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
