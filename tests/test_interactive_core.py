"""The interactive core's parts on their own (no graphs): content ids, the feature cache, the
prompt-map and logits codecs, the click-state prefix cache, the undo/redo rule and polygons."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from i2f_deploy.preprocess import geometry_for
from i2f_deploy.prompt_map import Click
from i2f_deploy.runtime.features import Entry, FeatureCache, content_id, encoded_entry
from i2f_deploy.runtime.history import ClickHistory
from i2f_deploy.runtime.polygons import polygons
from i2f_deploy.runtime.states import ClickStates, State

pytestmark = pytest.mark.unit

CLICKS = tuple(Click(x=i, y=i, positive=i % 2 == 0) for i in range(6))


# --------------------------------------------------------------------------- ids and features
def test_content_id_is_the_pixels_and_the_shape() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    assert content_id(rgb) == content_id(rgb.copy()) == content_id(np.asfortranarray(rgb))
    assert content_id(rgb[:, ::-1]) != content_id(rgb)
    assert content_id(rgb.reshape(30, 20, 3)) != content_id(rgb)  # same bytes, another shape


def _entry(key: str, mib: int) -> Entry:
    return Entry(key, geometry_for(10, 10, 512), np.zeros(mib << 20, np.uint8))


def test_feature_cache_drops_least_recently_used_encoded_images_over_its_budget() -> None:
    cache = FeatureCache(budget_bytes=3 << 20)
    for key in "abc":
        entry, new = cache.add(_entry(key, 1))
        assert new
        cache.encoded(entry, {"f": np.zeros(1 << 20, np.uint8)}, 1.0)  # pixels dropped: 1 MiB each
    cache.get("a")  # recently used
    entry, _ = cache.add(_entry("d", 1))  # waiting for the encoder: never dropped
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("d") is entry
    assert cache.stats()["evictions"] == 1
    assert cache.add(_entry("a", 1)) == (cache.get("a"), False)  # known: nothing new


def test_feature_cache_bounded_in_images() -> None:
    cache = FeatureCache(max_images=2)
    for key in "abc":
        cache.add(encoded_entry(key, geometry_for(10, 10, 512), {"f": np.zeros(4, np.float32)}))
    assert "a" not in cache and "b" in cache and "c" in cache
    empty = FeatureCache(max_images=0)
    empty.add(encoded_entry("a", geometry_for(10, 10, 512), {}))
    assert "a" not in empty


def test_features_are_held_in_c_order_once_per_image() -> None:
    """An encoder's transposed views are copied when stored, not by the decoder on every click."""
    view = np.arange(12, dtype=np.float32).reshape(3, 4).T
    kept = np.zeros((2, 2), np.float32)
    stored = [encoded_entry("a", geometry_for(10, 10, 512), {"f": view, "g": kept}).features]
    cache = FeatureCache()
    entry, _ = cache.add(_entry("b", 1))
    cache.encoded(entry, {"f": view, "g": kept}, 1.0)
    stored.append(entry.features)
    for features in stored:
        assert features is not None and features["f"].flags.c_contiguous and np.array_equal(features["f"], view)
        assert features["g"] is kept  # already in C order: not copied


# --------------------------------------------------------------------------- click states
def _state(value: int, size: int = 4) -> State:
    return State(np.full((1, 1, size, size), value, np.uint8), np.full((1, 1, size, size), value, np.float32), value)


def test_click_states_find_the_longest_known_prefix() -> None:
    states = ClickStates(4, capacity=3)
    clicks = list(CLICKS[:4])
    assert states.longest_prefix("a", clicks, 3) == (0, None)
    for k in range(1, 4):
        states.put("a", clicks[:k], _state(k))
    k, ref_label = states.longest_prefix("a", clicks, 2)
    assert k == 2 and (ref_label == 2).all()
    assert states.longest_prefix("b", clicks, 3) == (0, None)  # another image
    states.put("a", clicks[:4], _state(0))  # capacity 3: the oldest goes
    assert states.longest_prefix("a", clicks[:1], 1) == (0, None)


def test_click_states_keep_logits_of_the_states_put_last() -> None:
    states = ClickStates(4, capacity=None, logits_capacity=2)
    for k in range(1, 5):
        states.put("a", CLICKS[:k], _state(k), logits=True)
    assert states.with_logits == 2 and len(states) == 4
    assert states.take("a", CLICKS[:2]) is None  # its logits were dropped: 3 and 4 were put later
    taken = states.take("a", CLICKS[:4])
    assert taken is not None and (taken.logits == 4).all() and (taken.ref_label == 4).all() and taken.num_routed == 4
    assert states.take("a", CLICKS[:4]) is None  # taken: the caller holds it now
    assert states.longest_prefix("a", CLICKS[:4], 4)[0] == 4  # its prompt map stays
    states.put("a", CLICKS[:1], _state(1))  # without logits
    assert states.take("a", CLICKS[:1]) is None
    without = ClickStates(4, capacity=8)  # the server's: prompt maps only
    without.put("a", CLICKS[:1], _state(1), logits=True)
    assert without.take("a", CLICKS[:1]) is None and without.with_logits == 0


def test_click_states_put_later_keep_the_same_states_as_put_in_place() -> None:
    rng = np.random.default_rng(0)
    states = [State(rng.integers(0, 5, (1, 1, 8, 8), dtype=np.uint8), rng.standard_normal((1, 1, 8, 8)).astype(np.float32),
                    k) for k in range(4)]
    in_place, later = ClickStates(8, capacity=3, logits_capacity=2), ClickStates(8, capacity=3, logits_capacity=2)
    for k, state in enumerate(states):
        in_place.put("a", CLICKS[:k + 1], state, logits=True)
        later.put("a", CLICKS[:k + 1], state, logits=True, later=True)
    assert later.nbytes == in_place.nbytes and later.with_logits == 2  # reads wait for the puts under way
    assert len(later) == len(in_place) == 3  # the capacity applied in the same order
    for k in (3, 2):
        taken, expected = later.take("a", CLICKS[:k + 1]), in_place.take("a", CLICKS[:k + 1])
        assert taken is not None and expected is not None and taken.num_routed == expected.num_routed == k
        assert taken.packed == expected.packed
        assert taken.logits.tobytes() == states[k].logits.tobytes()
        np.testing.assert_array_equal(taken.ref_label, states[k].ref_label)
    assert later.longest_prefix("a", CLICKS[:4], 4)[0] == in_place.longest_prefix("a", CLICKS[:4], 4)[0] == 4
    later.close()
    later.put("a", CLICKS[:5], states[0], later=True)  # a put after close starts the thread again
    assert later.longest_prefix("a", CLICKS[:5], 5)[0] == 5
    later.close()


def test_click_states_put_later_that_fails_leaves_the_state_missing(caplog: pytest.LogCaptureFixture) -> None:
    states = ClickStates(4, capacity=None)
    bad = State(np.full((1, 1, 4, 4), 9, np.uint8), np.zeros((1, 1, 4, 4), np.float32), 0)  # 9: no prompt value
    states.put("a", CLICKS[:1], bad, later=True)
    states.put("a", CLICKS[:2], _state(2), later=True)
    assert states.longest_prefix("a", CLICKS[:2], 2)[0] == 2  # the next put is kept
    assert states.longest_prefix("a", CLICKS[:1], 1) == (0, None)  # the refused one is unknown
    assert "could not keep the state after 1 click(s)" in caplog.text
    states.close()


# --------------------------------------------------------------------------- undo and redo
def test_click_history_rule() -> None:
    history, applied = ClickHistory(), []

    def apply(clicks: tuple[Click, ...]) -> int:
        applied.append(clicks)
        return len(clicks)

    assert history.undo(apply) is None and history.redo(apply) is None and applied == []
    for click in CLICKS[:3]:
        history.click(click, apply)
    assert history.clicks == CLICKS[:3] and history.can_undo and not history.can_redo
    assert history.undo(apply) == 2 and history.undo(apply) == 1 and history.can_redo
    assert history.redo(apply) == 2 and history.clicks == CLICKS[:2]
    history.click(CLICKS[5], apply)  # a new click clears the redo stack
    assert not history.can_redo and history.redo(apply) is None
    assert history.reset(apply) == 0 and history.clicks == () and not history.can_undo
    assert applied[-1] == ()


def test_click_history_changes_nothing_when_apply_fails() -> None:
    history = ClickHistory()
    history.click(CLICKS[0], len)
    history.click(CLICKS[1], len)
    history.undo(len)

    def fail(clicks: tuple[Click, ...]) -> None:
        raise RuntimeError("decoder failed")

    for operation in (lambda: history.click(CLICKS[2], fail), lambda: history.undo(fail),
                      lambda: history.redo(fail), lambda: history.reset(fail)):
        with pytest.raises(RuntimeError):
            operation()
        assert history.clicks == CLICKS[:1] and history.can_redo
    assert history.redo(len) == 2 and history.clicks == CLICKS[:2]


# --------------------------------------------------------------------------- polygons
def test_polygons_trace_outer_boundaries() -> None:
    mask = np.zeros((50, 80), bool)
    mask[10:30, 20:60] = True
    mask[15:20, 30:40] = False  # a hole: outer boundaries only
    outline = polygons(mask)
    assert len(outline) == 1 and outline[0].dtype == np.int32 and outline[0].shape == (4, 2)
    assert sorted(map(tuple, outline[0].tolist())) == [(20, 10), (20, 29), (59, 10), (59, 29)]
    assert polygons(np.zeros((5, 5), bool)) == []


def test_polygons_drop_outlines_without_area_and_keep_the_rest() -> None:
    """A lone pixel and a one-pixel line have outlines of 1 and 2 points: no area, dropped (the
    tools cannot draw them); a 2x2 square has 4 points and stays."""
    mask = np.zeros((20, 20), bool)
    mask[2, 2] = True
    mask[5, 3:10] = True
    mask[12:14, 12:14] = True
    outline = polygons(mask)
    assert [sorted(map(tuple, p.tolist())) for p in outline] == [[(12, 12), (12, 13), (13, 12), (13, 13)]]
    found, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    assert sorted(len(c) for c in found) == [1, 2, 4]  # what was dropped


def test_polygons_simplified_by_a_fraction_of_the_perimeter() -> None:
    mask = cv2.circle(np.zeros((200, 200), np.uint8), (100, 100), 60, 1, -1).astype(bool)
    fine, coarse = polygons(mask)[0], polygons(mask, 0.01)[0]
    assert len(coarse) < len(fine) and len(coarse) >= 3
