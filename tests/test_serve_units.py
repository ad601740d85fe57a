"""The serving core's parts on their own: mask encodings, click states, the graph gate, the feature
cache, image decoding, CVAT's click order (no graphs, no server)."""

from __future__ import annotations

import base64
import threading
import time

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from i2f_deploy.preprocess import geometry_for
from i2f_deploy.prompt_map import Click
from i2f_deploy.serve.adapters.brush_rle import mask_to_rle
from i2f_deploy.serve.adapters.cvat import ClickOrder
from i2f_deploy.serve.budget import MemoryBudget
from i2f_deploy.serve.gate import GraphGate
from i2f_deploy.serve.images import ImageError, decode_base64, decode_image, image_id
from i2f_deploy.serve.masks import polygons, to_coco_rle, to_png
from i2f_deploy.serve.states import ClickStates
from i2f_deploy.serve.store import Entry, ImageStore

from support.images import coco_rle_to_mask, decode_brush_rle


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


def test_png_and_polygons_of_a_mask() -> None:
    mask = np.zeros((50, 80), bool)
    mask[10:30, 20:60] = True
    decoded = cv2.imdecode(np.frombuffer(to_png(mask), np.uint8), cv2.IMREAD_GRAYSCALE)
    assert ((decoded > 127) == mask).all()
    outline = polygons(mask)
    assert len(outline) == 1 and sorted(map(tuple, outline[0])) == [(20, 10), (20, 29), (59, 10), (59, 29)]
    assert polygons(np.zeros((5, 5), bool)) == []


def test_click_states_find_the_longest_known_prefix() -> None:
    states = ClickStates(capacity=3, size=4)
    clicks = [Click(x=i, y=i, positive=True) for i in range(4)]
    assert states.longest_prefix("a", clicks, 3) == (0, None)
    for k in range(1, 4):
        states.put("a", clicks[:k], np.full((1, 1, 4, 4), k, np.uint8))
    k, ref_label = states.longest_prefix("a", clicks, 2)
    assert k == 2 and (ref_label == 2).all()
    assert states.longest_prefix("b", clicks, 3) == (0, None)  # another image
    states.put("a", clicks[:4], np.zeros((1, 1, 4, 4), np.uint8))  # capacity 3: the oldest goes
    assert states.longest_prefix("a", clicks[:1], 1) == (0, None)


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


def _entry(key: str, mib: int) -> Entry:
    return Entry(key, geometry_for(10, 10, 512), np.zeros(mib << 20, np.uint8))


def test_store_drops_least_recently_used_encoded_images_over_its_budget() -> None:
    store = ImageStore(budget_bytes=3 << 20)
    for key in "abc":
        entry, new = store.add(_entry(key, 1))
        assert new
        store.encoded(entry, {"f": np.zeros(1 << 20, np.uint8)}, 1.0)  # pixels dropped: 1 MiB each
    store.get("a")  # recently used
    entry, _ = store.add(_entry("d", 1))  # waiting for the encoder: never dropped
    assert store.get("b") is None and store.get("a") is not None and store.get("d") is entry
    assert store.stats()["evictions"] == 1
    assert store.add(_entry("a", 1)) == (store.get("a"), False)  # known: nothing new


def test_image_decoding_and_content_ids() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
    memory = MemoryBudget(64 << 20)
    assert (decode_image(png, 10_000, memory) == rgb).all()
    text = base64.b64encode(png).decode()
    assert (image_id(decode_base64(text, 10_000, memory)) == image_id(decode_base64("data:image/png;base64," + text, 10_000, memory))
            == image_id(rgb))
    assert image_id(rgb[:, ::-1]) != image_id(rgb)
    for bad, status, message in ((b"", 422, "empty"), (b"not an image", 422, "cannot decode"),
                                 (png, 413, "more than the limit of 100")):
        with pytest.raises(ImageError, match=message) as caught:
            decode_image(bad, 100, memory)
        assert caught.value.status == status
    with pytest.raises(ImageError, match="not valid base64"):
        decode_base64("%%%", 10_000, memory)


def test_cvat_click_order_keeps_the_previous_order_and_appends_new_points() -> None:
    order = ClickOrder()
    a, b, c = (Click(x=1, y=1, positive=True), Click(x=2, y=2, positive=False), Click(x=3, y=3, positive=True))
    assert order.order("img", [a]) == [a]
    assert order.order("img", [a, c, b]) == [a, c, b]  # new points: positives first
    assert order.order("img", [c, a, b, b]) == [a, c, b, b]
    assert order.order("img", [a, b]) == [a, b]  # c removed: the prefix before it, then the rest
