"""The web page's features in a real headless Chromium, against the server in this process: the
encoding indicator and the busy state (made visible by holding the server's graph gate), fit,
zoom and pan with a click at full detail, several objects and their export, opacity and hiding,
reset, drag-and-drop and paste, the shortcut list, the API docs offline and the favicon. Each
test keeps a screenshot in ``test-artifacts/``; masks are checked against the native API."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from support.browser import ARTIFACTS, require_chromium, serving_in_process
from support.images import coco_rle_to_mask, png_bytes, png_to_mask
from support.servers import free_port

pytestmark = pytest.mark.system

VIEWPORT = {"width": 1000, "height": 700}
READY = "document.body.dataset.state === 'ready'"


def scene(height: int, width: int, seed: int) -> np.ndarray:
    """A gradient with a disc and a rectangle; ``seed`` shifts the colours so each test's image is new
    to the server (and so is encoded while the test watches)."""
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.stack([cols * 200 // width, rows * 200 // height, np.full_like(rows, 40 + seed)], -1).astype(np.uint8)
    cv2.circle(image, (width * 3 // 8, height * 5 // 12), min(height, width) // 6, (220, 60, 40), -1)
    cv2.rectangle(image, (width * 5 // 8, height // 5), (width * 7 // 8, height // 2), (40, 200, 90), -1)
    return image


def write_png(path: Path, rgb: np.ndarray) -> Path:
    path.write_bytes(png_bytes(rgb))
    return path


@pytest.fixture(scope="module")
def engine(tiny_artifacts: Path):
    from i2f_deploy.serve.config import ServeConfig
    from i2f_deploy.serve.core import Engine

    engine = Engine(ServeConfig(artifact_dir=tiny_artifacts, threads=1, graph_runs=1))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def base_url(engine) -> Iterator[str]:
    from i2f_deploy.serve.api import create_app

    with serving_in_process(create_app(engine), free_port()) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, base_url: str):
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(base_url)
    yield page
    context.close()
    assert errors == []


def status(page) -> str:
    return page.locator("#status-text").text_content()


def open_image(page, path: Path) -> None:
    page.set_input_files("#file", str(path))
    wait_for(page, clicks=0, objects=1)


def wait_for(page, clicks: int, objects: int | None = None) -> None:
    condition = f"{READY} && document.querySelector('#overlay').dataset.clicks === '{clicks}'"
    if objects is not None:
        condition += f" && document.querySelector('#overlay').dataset.objects === '{objects}'"
    page.wait_for_function(condition, timeout=60_000)
    assert "error" not in (page.get_attribute("#status", "class") or ""), status(page)


def screen_point(page, x: int, y: int) -> tuple[float, float]:
    """Where image pixel (x, y)'s centre is on the screen, whatever the zoom and pan."""
    box = page.locator("#image").bounding_box()
    width, height = (int(page.get_attribute("#image", name)) for name in ("width", "height"))
    return box["x"] + (x + 0.5) * box["width"] / width, box["y"] + (y + 0.5) * box["height"] / height


def click_pixel(page, x: int, y: int, button: str = "left") -> None:
    page.mouse.click(*screen_point(page, x, y), button=button)


def session_of(page) -> str:
    return page.get_attribute("#overlay", "data-session")


def page_mask(base_url: str, session_id: str) -> np.ndarray:
    return png_to_mask(httpx.get(f"{base_url}/api/sessions/{session_id}/mask.png").content)


def native_mask(base_url: str, session_id: str) -> np.ndarray:
    """The mask a fresh native-API session gets from the same clicks on the same image."""
    current = httpx.get(f"{base_url}/api/sessions/{session_id}?mask=none").json()
    fresh = httpx.post(f"{base_url}/api/sessions", json={"image_id": current["image_id"]}).json()["session_id"]
    for click in current["clicks"]:
        assert httpx.post(f"{base_url}/api/sessions/{fresh}/clicks", json=click).status_code == 200
    return page_mask(base_url, fresh)


def test_encoding_shows_its_elapsed_time_and_a_click_shows_busy(page, engine, tmp_path: Path) -> None:
    path = write_png(tmp_path / "slow.png", scene(300, 420, seed=1))
    with engine.gate.click():  # the only graph slot is taken: the encoder waits
        page.set_input_files("#file", str(path))
        page.wait_for_function(r"/^Encoding… [1-9]\d*\.\d s$/.test(document.querySelector('#status-text').textContent)",
                               timeout=30_000)
        assert page.evaluate("document.body.dataset.state") == "encoding"
        assert page.locator("#spinner").is_visible()
        page.screenshot(path=str(ARTIFACTS / "page-encoding.png"))
    wait_for(page, clicks=0, objects=1)
    assert re.fullmatch(r"420×300, encoded in \d+\.\d s: click on the object\.", status(page)), status(page)
    assert not page.locator("#spinner").is_visible()

    with engine.gate.click():  # now the decoder waits
        click_pixel(page, 157, 125)
        page.wait_for_function("document.body.dataset.state === 'busy'")
        assert status(page) == "Segmenting…" and page.locator("#spinner").is_visible()
        assert page.eval_on_selector("#overlay", "e => getComputedStyle(e).cursor") == "progress"
        page.screenshot(path=str(ARTIFACTS / "page-busy.png"))
    wait_for(page, clicks=1)
    assert re.match(r"1 click\(s\), \d+ px · decoder", status(page))


def test_a_small_image_is_fitted_and_centred_in_the_window(page, tmp_path: Path) -> None:
    open_image(page, write_png(tmp_path / "small.png", scene(48, 64, seed=2)))
    shown = page.locator("#image").bounding_box()
    window = page.locator("#viewport").bounding_box()
    assert shown["width"] >= 0.97 * window["width"] or shown["height"] >= 0.97 * window["height"]
    assert abs(shown["x"] + shown["width"] / 2 - (window["x"] + window["width"] / 2)) < 2
    assert abs(shown["y"] + shown["height"] / 2 - (window["y"] + window["height"] / 2)) < 2
    page.screenshot(path=str(ARTIFACTS / "page-small-image.png"))


def test_a_click_after_zooming_into_a_4000x3000_image_lands_on_its_pixel(page, base_url: str, tmp_path: Path) -> None:
    open_image(page, write_png(tmp_path / "large.png", scene(3000, 4000, seed=3)))
    fitted = float(page.get_attribute("#stage", "data-scale"))
    assert fitted < 0.3  # the whole image is in the window
    target = (1503, 1251)  # inside the disc
    page.mouse.move(*screen_point(page, *target))
    for _ in range(8):
        page.mouse.wheel(0, -300)
    page.wait_for_function(f"Number(document.querySelector('#stage').dataset.scale) > {fitted * 10}")
    box = page.locator("#image").bounding_box()
    assert box["width"] / 4000 > 2  # an image pixel spans several screen pixels
    pointer = screen_point(page, *target)
    assert abs(pointer[0] - page.evaluate("window.innerWidth") / 2) < 600  # zoomed where the pointer was
    click_pixel(page, *target)
    wait_for(page, clicks=1)
    session = session_of(page)
    clicks = httpx.get(f"{base_url}/api/sessions/{session}?mask=none").json()["clicks"]
    assert clicks == [{"x": target[0], "y": target[1], "positive": True}]
    mask = page_mask(base_url, session)
    assert mask.shape == (3000, 4000)
    np.testing.assert_array_equal(mask, native_mask(base_url, session))
    page.screenshot(path=str(ARTIFACTS / "page-zoomed-click.png"))

    before = page.locator("#image").bounding_box()  # a drag pans and adds no click
    start = screen_point(page, *target)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(start[0] - 150, start[1] - 80, steps=5)
    page.mouse.up()
    after = page.locator("#image").bounding_box()
    assert (round(before["x"] - after["x"]), round(before["y"] - after["y"])) == (150, 80)
    page.wait_for_timeout(300)
    assert page.get_attribute("#overlay", "data-clicks") == "1"
    page.keyboard.press("f")
    assert float(page.get_attribute("#stage", "data-scale")) == pytest.approx(fitted)


def test_two_objects_export_as_png_per_object_and_coco(page, base_url: str, tmp_path: Path) -> None:
    open_image(page, write_png(tmp_path / "objects.png", scene(360, 480, seed=4)))
    click_pixel(page, 180, 150)  # the disc
    wait_for(page, clicks=1)
    first = session_of(page)
    page.keyboard.press("n")
    wait_for(page, clicks=0, objects=2)
    assert status(page) == "Object 2: click on it."
    click_pixel(page, 360, 110)  # the rectangle
    wait_for(page, clicks=1, objects=2)
    second = session_of(page)
    assert first != second
    colours = page.evaluate("""() => {
        const c = document.querySelector('#masks');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const seen = new Set();
        for (let i = 0; i < d.length; i += 4) if (d[i + 3]) seen.add(`${d[i]},${d[i + 1]},${d[i + 2]}`);
        return [...seen].sort(); }""")
    assert colours == ["249,115,22", "30,144,255"]  # each object in its own colour
    page.screenshot(path=str(ARTIFACTS / "page-two-objects.png"))

    with page.expect_download() as download:
        page.click("#export-coco")
    coco = json.loads(Path(download.value.path()).read_text())
    assert download.value.suggested_filename == "objects.coco.json"
    assert coco["images"] == [{"id": 1, "file_name": "objects", "width": 480, "height": 360}]
    assert [a["object"] for a in coco["annotations"]] == [1, 2]
    for annotation, session in zip(coco["annotations"], (first, second)):
        expected = native_mask(base_url, session)
        mask = coco_rle_to_mask(annotation["rle"])
        np.testing.assert_array_equal(mask, expected)
        rows, cols = np.nonzero(mask)
        assert annotation["area"] == int(mask.sum())
        assert annotation["bbox"] == [int(cols.min()), int(rows.min()), int(np.ptp(cols)) + 1, int(np.ptp(rows)) + 1]
        assert annotation["segmentation"] and all(len(p) >= 6 and len(p) % 2 == 0 for p in annotation["segmentation"])
        assert len(annotation["clicks"]) == 1

    downloads = []
    page.on("download", lambda item: downloads.append(item))
    page.click("#export-png")
    page.wait_for_function(f"{READY} && /PNG per object/.test(document.querySelector('#status-text').textContent)")
    page.wait_for_timeout(500)
    assert sorted(d.suggested_filename for d in downloads) == ["objects-object-1.png", "objects-object-2.png"]
    for item in sorted(downloads, key=lambda d: d.suggested_filename):
        session = first if item.suggested_filename.endswith("1.png") else second
        np.testing.assert_array_equal(png_to_mask(Path(item.path()).read_bytes()), native_mask(base_url, session))

    page.keyboard.press("Tab")  # back to object 1: its clicks and session
    assert session_of(page) == first


def test_opacity_hide_and_the_status_after_reset(page, tmp_path: Path) -> None:
    open_image(page, write_png(tmp_path / "opacity.png", scene(300, 400, seed=5)))
    click_pixel(page, 150, 125)
    wait_for(page, clicks=1)
    masks = page.locator("#masks")
    page.locator("#opacity").fill("100")
    assert masks.evaluate("e => e.style.opacity") == "1"
    page.locator("#opacity").fill("20")
    assert masks.evaluate("e => e.style.opacity") == "0.2"
    page.screenshot(path=str(ARTIFACTS / "page-opacity-20.png"))
    page.keyboard.press("h")
    assert masks.is_hidden() and page.get_attribute("#hide", "aria-pressed") == "true"
    page.keyboard.press("h")
    assert masks.is_visible()
    page.click("#reset")
    wait_for(page, clicks=0)
    assert status(page) == "No clicks: click on the object."
    assert page.get_attribute("#overlay", "data-mask-pixels") == "0"


def test_an_image_opens_by_drop_and_by_paste(page, tmp_path: Path) -> None:
    dispatch = """async ([data, name, kind]) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, { type: "image/png" }));
        if (kind === "drop") document.querySelector('#viewport').dispatchEvent(
            new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        else document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true }));
    }"""
    for kind, (height, width) in (("drop", (200, 300)), ("paste", (240, 320))):
        data = base64.b64encode(png_bytes(scene(height, width, seed=6))).decode()
        page.evaluate(dispatch, [data, f"{kind}.png", kind])
        page.wait_for_function(f"{READY} && document.querySelector('#image').width === {width}", timeout=60_000)
        assert page.get_attribute("#image", "height") == str(height)
        assert status(page).startswith(f"{width}×{height}")
    page.screenshot(path=str(ARTIFACTS / "page-pasted.png"))


def test_shortcut_list_favicon_and_offline_api_docs(page, browser, base_url: str) -> None:
    page.keyboard.press("?")
    help_list = page.locator("#help")
    assert help_list.is_visible()
    text = help_list.text_content()
    for action in ("add to the object", "remove from the object", "zoom", "pan", "new object", "undo", "redo",
                   "hide or show the masks", "fit the image"):
        assert action in text
    page.screenshot(path=str(ARTIFACTS / "page-shortcuts.png"))
    page.keyboard.press("Escape")
    assert help_list.is_hidden()

    favicon = httpx.get(f"{base_url}/favicon.ico")
    assert favicon.status_code == 200 and favicon.headers["content-type"].startswith("image/svg+xml")
    assert page.evaluate("fetch(document.querySelector('link[rel=icon]').href).then(r => r.status)") == 200

    context = browser.new_context(viewport=VIEWPORT)
    elsewhere: list[str] = []

    def only_this_server(route) -> None:
        if route.request.url.startswith(base_url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    try:
        docs = context.new_page()
        docs.route("**/*", only_this_server)
        docs.goto(f"{base_url}/docs")
        docs.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
        assert "i2f-deploy serve" in docs.locator(".swagger-ui .info .title").text_content()
        docs.wait_for_selector(".opblock-tag", timeout=30_000)
        docs.screenshot(path=str(ARTIFACTS / "page-api-docs.png"))
    finally:
        context.close()
    assert elsewhere == []
