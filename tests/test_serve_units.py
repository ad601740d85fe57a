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
from i2f_deploy.serve.adapters.brush_rle import mask_to_rle
from i2f_deploy.serve.adapters.cvat import ClickOrder
from i2f_deploy.serve.budget import MemoryBudget
from i2f_deploy.serve.fetch import Fetcher
from i2f_deploy.serve.gate import GraphGate
from i2f_deploy.serve.images import FetchFailed, ImageError, decode_base64, decode_image
from i2f_deploy.serve.masks import to_coco_rle, to_png

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
