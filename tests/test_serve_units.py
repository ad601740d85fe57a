"""The server's parts on their own: mask encodings, the graph gate, image decoding, CVAT's click
order (no graphs, no server). The interactive core's parts are tests/test_interactive_core.py's."""

from __future__ import annotations

import base64
import json
import threading
import time

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from support.images import coco_rle_to_mask, decode_brush_rle
from support.servers import LoopbackServer, QuietHandler

from i2f_deploy.prompt_map import Click
from i2f_deploy.runtime.features import content_id
from i2f_deploy.runtime.polygons import polygons
from i2f_deploy.serve.adapters.brush_rle import mask_to_rle
from i2f_deploy.serve.adapters.cvat import ClickOrder
from i2f_deploy.serve.api import result_out
from i2f_deploy.serve.budget import MemoryBudget
from i2f_deploy.serve.core import Segmentation
from i2f_deploy.serve.fetch import Fetcher
from i2f_deploy.serve.gate import GraphGate
from i2f_deploy.serve.images import FetchFailed, ImageError, decode_base64, decode_image
from i2f_deploy.serve.masks import polygons_json, to_coco_rle, to_png
from i2f_deploy.serve.sessions import Session

pytestmark = pytest.mark.unit

masks_strategy = arrays(bool, st.tuples(st.integers(1, 40), st.integers(1, 40)))


@settings(max_examples=60, deadline=None)
@given(masks_strategy)
def test_brush_rle_decodes_to_the_mask_as_rgba(mask: np.ndarray) -> None:
    decoded = decode_brush_rle(mask_to_rle(mask)).reshape(*mask.shape, 4)
    assert (decoded == (mask * 255)[..., None]).all()


def test_brush_rle_splits_runs_longer_than_its_widest_field() -> None:
    mask = np.zeros((300, 400), bool)  # 480 000 RGBA values of one run: several 2**16 chunks
    mask[-1, -1] = True
    decoded = decode_brush_rle(mask_to_rle(mask)).reshape(300, 400, 4)[..., 3]
    assert (decoded == mask * 255).all()


@settings(max_examples=40, deadline=None)
@given(masks_strategy)
def test_coco_rle_is_column_major_starting_with_background(mask: np.ndarray) -> None:
    rle = to_coco_rle(mask)
    assert rle["size"] == list(mask.shape)
    assert (coco_rle_to_mask(rle) == mask).all()


def test_png_of_a_mask() -> None:
    mask = np.zeros((50, 80), bool)
    mask[10:30, 20:60] = True
    decoded = cv2.imdecode(np.frombuffer(to_png(mask), np.uint8), cv2.IMREAD_GRAYSCALE)
    assert ((decoded > 127) == mask).all()


@settings(max_examples=60, deadline=None)
@given(masks_strategy)
def test_png_decodes_to_the_mask_as_0_and_255(mask: np.ndarray) -> None:
    decoded = cv2.imdecode(np.frombuffer(to_png(mask), np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.shape == mask.shape and (decoded == mask * 255).all()


def fragmented(height: int, width: int, seed: int) -> np.ndarray:
    """Hundreds of separate blobs of a few pixels, some on the border: many outlines."""
    cells = np.random.default_rng(seed).random((height // 3 + 1, width // 3 + 1)) < 0.4
    return np.kron(cells, np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0]], bool))[:height, :width]


def plain_polygons_json(mask: np.ndarray) -> str:
    return json.dumps([p.tolist() for p in polygons(mask)], separators=(",", ":"))


@settings(max_examples=80, deadline=None)
@given(masks_strategy)
def test_polygons_json_is_the_outlines_as_lists(mask: np.ndarray) -> None:
    assert polygons_json(polygons(mask)).decode() == plain_polygons_json(mask)


@pytest.mark.parametrize("mask", [np.zeros((30, 40), bool), np.ones((30, 40), bool), np.ones((1, 1), bool),
                                  fragmented(300, 451, 0), fragmented(1024, 1536, 1),
                                  np.random.default_rng(2).random((200, 12000)) < 0.5],
                         ids=["empty", "full", "one-pixel", "fragmented", "fragmented-photo", "wide"])
def test_polygons_json_of_empty_full_fragmented_and_wide_masks(mask: np.ndarray) -> None:
    text = polygons_json(polygons(mask))
    assert text.decode() == plain_polygons_json(mask)
    assert json.loads(text) == [p.tolist() for p in polygons(mask)]


def test_polygons_json_writes_every_digit_of_large_coordinates() -> None:
    shape = np.array([[0, 9], [10, 99], [100, 2_147_483_647]], np.int32)
    assert json.loads(polygons_json([shape, shape[::-1]])) == [shape.tolist(), shape[::-1].tolist()]


def test_gate_admits_a_waiting_click_before_a_waiting_encoding() -> None:
    gate = GraphGate(slots=1)
    order, held = [], []

    def take(kind: str) -> None:
        held.append(getattr(gate, kind)())
        held[-1].__enter__()
        order.append(kind)

    with gate.encode():
        threads = [threading.Thread(target=take, args=(kind,), daemon=True) for kind in ("encode", "click")]
        for thread in threads:
            thread.start()
            time.sleep(0.05)
        assert order == []  # both wait for the slot
    threads[1].join(5)
    time.sleep(0.05)
    assert order == ["click"]  # the encoding still waits: the click holds the only slot


def test_gate_keeps_one_slot_for_clicks() -> None:
    gate = GraphGate(slots=2)
    second = gate.encode()
    with gate.encode():
        started = threading.Event()
        threading.Thread(target=lambda: (second.__enter__(), started.set()), daemon=True).start()
        assert not started.wait(0.1)  # a second encoding may not take the last slot
        with gate.click():
            pass  # a click gets it at once
    assert started.wait(5)


def test_image_decoding_and_content_ids() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
    memory = MemoryBudget(64 << 20)
    assert (decode_image(png, 10_000, memory) == rgb).all()
    text = base64.b64encode(png).decode()
    assert (content_id(decode_base64(text, 10_000, memory)) == content_id(decode_base64("data:image/png;base64," + text, 10_000, memory))
            == content_id(rgb))
    assert content_id(rgb[:, ::-1]) != content_id(rgb)
    for bad, status, message in ((b"", 422, "empty"), (b"not an image", 422, "cannot decode"),
                                 (png, 413, "more than the limit of 100")):
        with pytest.raises(ImageError, match=message) as caught:
            decode_image(bad, 100, memory)
        assert caught.value.http_status == status
    with pytest.raises(ImageError, match="not valid base64"):
        decode_base64("%%%", 10_000, memory)


def test_cvat_click_order_keeps_the_previous_order_and_appends_new_points() -> None:
    order = ClickOrder()
    a, b, c = (Click(x=1, y=1, positive=True), Click(x=2, y=2, positive=False), Click(x=3, y=3, positive=True))
    assert order.order("img", [a]) == [a]
    assert order.order("img", [a, c, b]) == [a, c, b]  # new points: positives first
    assert order.order("img", [c, a, b, b]) == [a, c, b, b]
    assert order.order("img", [a, b]) == [a, b]  # c removed: the prefix before it, then the rest


def test_the_personal_access_token_exchange_ends_at_the_fetch_deadline() -> None:
    """Label Studio's token endpoint answering a header byte every 0.2 s (each read well within
    httpx's timeouts) cannot hold a fetch past its deadline."""
    stop = threading.Event()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Padding: " + b"p" * 200:
                if stop.wait(0.2):
                    return
                self.wfile.write(bytes([byte]))
                self.wfile.flush()

    studio = LoopbackServer(Handler)
    personal_token = ".".join(base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")
                              for part in ({"alg": "HS256"}, {"token_type": "refresh"})) + ".c2ln"
    fetcher = Fetcher(studio.url, personal_token, (), timeout_s=1.0, max_bytes=1 << 20)
    start = time.monotonic()
    try:
        with pytest.raises(FetchFailed, match=r"fetching .*/data/upload/1/x\.png failed: timed out after 1 s"):
            fetcher.get("/data/upload/1/x.png")
        assert time.monotonic() - start < 2.0
    finally:
        stop.set()
        studio.shutdown()


@pytest.mark.parametrize("mask", [None, np.zeros((40, 60), bool), np.ones((40, 60), bool), fragmented(400, 600, 3)],
                         ids=["no-click", "empty", "full", "fragmented"])
@pytest.mark.parametrize(("mask_format", "with_polygons"), [("png", True), ("rle", True), ("none", False), ("none", True)])
def test_a_session_answer_is_the_plain_computation(mask: np.ndarray | None, mask_format: str, with_polygons: bool) -> None:
    """The answer's JSON, polygons written from the arrays, reads as the answer built from Python lists."""
    height, width = (40, 60) if mask is None else mask.shape
    clicks = () if mask is None else (Click(x=3, y=4, positive=True), Click(x=width - 1, y=0, positive=False))
    result = Segmentation("img", width, height, clicks, mask, None if mask is None else 7,
                          {"encode_wait_ms": 0.0, "decode_ms": 12.5, "decoder_runs": len(clicks), "total_ms": 14.25})
    answer = json.loads(result_out(Session("sess", "img"), result, mask_format, with_polygons).body)
    shapes = ([p.tolist() for p in polygons(mask)] if mask is not None else []) if with_polygons else None
    encoded = None
    if mask is not None and mask_format == "png":
        encoded = {"format": "png", "data": "data:image/png;base64," + base64.b64encode(to_png(mask)).decode()}
    elif mask is not None and mask_format == "rle":
        encoded = {"format": "rle", "data": to_coco_rle(mask)}
    assert answer == {"session_id": "sess", "image_id": "img", "width": width, "height": height,
                      "clicks": [{"x": c.x, "y": c.y, "positive": c.positive} for c in clicks],
                      "can_undo": bool(clicks), "can_redo": False, "mask": encoded, "polygons": shapes,
                      "num_routed": result.num_routed, "timings": result.timings}
