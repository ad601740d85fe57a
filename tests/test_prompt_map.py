"""Prompt-map encoding and update rules against the official golden loop and a per-pixel
transcription of the official rules."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from i2f_deploy.errors import InputError
from i2f_deploy.prompt_map import (
    DEFINITELY_BACKGROUND,
    DEFINITELY_FOREGROUND,
    POSSIBLY_BACKGROUND,
    POSSIBLY_FOREGROUND,
    UNKNOWN,
    Click,
    add_clicks,
    apply_prediction,
    encode_clicks,
    initial_prompt_map,
    merge_prompt_map,
    scale_click,
)

pytestmark = pytest.mark.unit

# ---------------------------------------------------------------------------------------------
# A deliberately naive, per-pixel transcription of the official rules (utils/update_ref_labels.py,
# utils/fast_point_to_ref_labels.py, segmentors/interseg.py) with radii 5 / 0.


def _ref_rule(old: int, value: int) -> int:
    """``update_ref_labels_with_masks`` for one pixel whose mask is set for ``value``."""
    if value in (0, 4):
        return value
    if value == 2:
        return old
    opposite = 4 - value  # 1 <-> 3
    if old == 2:
        return value
    if old == opposite:
        return 2
    return old


def _ref_encode(clicks: list[Click], size: int) -> np.ndarray:
    out = np.full((size, size), 2, dtype=np.uint8)
    kinds_in_order: list[bool] = []
    for c in clicks:
        if c.positive not in kinds_in_order:
            kinds_in_order.append(c.positive)
    for y in range(size):
        for x in range(size):
            near_pos = any((y - c.y) ** 2 + (x - c.x) ** 2 <= 25 for c in clicks if c.positive)
            near_neg = any((y - c.y) ** 2 + (x - c.x) ** 2 <= 25 for c in clicks if not c.positive)
            value = 2
            for positive in kinds_in_order:  # the kind whose first click is later paints last
                if positive and near_pos:
                    value = 4
                if not positive and near_neg:
                    value = 0
            out[y, x] = value
    return out


def _ref_add_clicks(ref: np.ndarray, clicks: list[Click]) -> np.ndarray:
    size = ref.shape[-1]
    new = _ref_encode(clicks, size)
    out = ref.copy()
    for y in range(size):
        for x in range(size):
            out[0, 0, y, x] = _ref_rule(int(ref[0, 0, y, x]), int(new[y, x]))
    return out


def _ref_prediction(ref: np.ndarray, pred: np.ndarray) -> np.ndarray:
    out = ref.copy()
    size = ref.shape[-1]
    for y in range(size):
        for x in range(size):
            out[0, 0, y, x] = _ref_rule(int(ref[0, 0, y, x]), 3 if pred[y, x] else 1)
    return out


# ---------------------------------------------------------------------------------------------
# Golden: the official interactive loop.


def test_golden_loop_exact(golden, golden_meta):
    # golden.json's loop_clicks are the points the official loop painted on the 512 map: the
    # discs in loop*/ref_label are centred on them as given, i.e. they are already in target
    # coordinates (no further scaling).
    size = golden_meta["target_size"]
    ref = initial_prompt_map(size)
    assert ref.shape == (1, 1, size, size) and ref.dtype == np.uint8
    for k, point in enumerate(golden_meta["loop_clicks"]):
        click = Click.from_official(point)
        previous, snapshot = ref, ref.copy()
        ref = add_clicks(previous, [click])
        np.testing.assert_array_equal(previous, snapshot)  # pure: the input map is untouched
        expected = golden[f"loop{k}/ref_label"]
        assert ref.dtype == expected.dtype and ref.shape == expected.shape
        assert np.array_equal(ref, expected), f"loop{k}: ref_label differs at " \
            f"{int((ref != expected).sum())} pixels"
        pred = golden[f"loop{k}/logits"] > 0
        ref = apply_prediction(ref, pred)
        expected = golden[f"loop{k}/ref_label_after_prediction"]
        assert np.array_equal(ref, expected), f"loop{k}: after prediction differs at " \
            f"{int((ref != expected).sum())} pixels"


def test_golden_loop_rejects_plausible_wrong_rules(golden, golden_meta):
    """The golden data discriminates: a plain overwrite by the prediction (sparing only 0/4)
    or a disc with ``<`` instead of ``<=`` would not match it."""
    size = golden_meta["target_size"]
    ref = initial_prompt_map(size)
    for k, point in enumerate(golden_meta["loop_clicks"][:2]):
        ref = add_clicks(ref, [Click.from_official(point)])
        pred = golden[f"loop{k}/logits"][0, 0] > 0
        ref = np.where(np.isin(ref, (0, 4)), ref, np.where(pred, 3, 1)).astype(np.uint8)
    assert not np.array_equal(ref, golden["loop1/ref_label_after_prediction"])
    c = Click.from_official(golden_meta["loop_clicks"][0])
    yy, xx = np.mgrid[:size, :size]
    wrong = np.where((yy - c.y) ** 2 + (xx - c.x) ** 2 < 25, 4, 2).astype(np.uint8)
    assert not np.array_equal(wrong[None, None], golden["loop0/ref_label"])


# ---------------------------------------------------------------------------------------------
# Handcrafted rules.


def test_disc_has_radius_five_and_81_pixels():
    ref = add_clicks(initial_prompt_map(21), [Click(x=10, y=10, positive=True)])
    assert int((ref == DEFINITELY_FOREGROUND).sum()) == 81
    assert ref[0, 0, 10, 5] == 4 and ref[0, 0, 10, 4] == 2  # distance 5 in, 6 out
    assert ref[0, 0, 13, 14] == 4  # 3² + 4² = 25: inclusive
    assert ref[0, 0, 14, 14] == 2  # 32 > 25
    expected = _ref_add_clicks(initial_prompt_map(21), [Click(x=10, y=10, positive=True)])
    np.testing.assert_array_equal(ref, expected)


def test_definite_overwrites_everything():
    ref = np.full((1, 1, 13, 13), DEFINITELY_BACKGROUND, dtype=np.uint8)
    ref[0, 0, :, 6:] = POSSIBLY_BACKGROUND
    snapshot = ref.copy()
    out = add_clicks(ref, [Click(x=6, y=6, positive=True)])
    assert out[0, 0, 6, 6] == 4 and out[0, 0, 6, 2] == 4 and out[0, 0, 6, 10] == 4
    assert out[0, 0, 0, 0] == 0 and out[0, 0, 0, 12] == 1  # outside the disc: unchanged
    np.testing.assert_array_equal(out, _ref_add_clicks(ref, [Click(x=6, y=6, positive=True)]))
    neg = add_clicks(out, [Click(x=6, y=6, positive=False)])
    assert neg[0, 0, 6, 6] == 0
    np.testing.assert_array_equal(ref, snapshot)  # input not mutated


def test_possibly_writes_only_over_unknown_and_cancels_opposite():
    ref = np.tile(np.array([0, 1, 2, 3, 4], dtype=np.uint8), (5, 1))[None, None]
    fg = merge_prompt_map(ref, np.full((5, 5), POSSIBLY_FOREGROUND, dtype=np.uint8))
    np.testing.assert_array_equal(fg[0, 0, 0], [0, 2, 3, 3, 4])
    bg = merge_prompt_map(ref, np.full((5, 5), POSSIBLY_BACKGROUND, dtype=np.uint8))
    np.testing.assert_array_equal(bg[0, 0, 0], [0, 1, 1, 2, 4])
    same = merge_prompt_map(ref, np.full((5, 5), UNKNOWN, dtype=np.uint8))
    np.testing.assert_array_equal(same, ref)
    for value in (0, 4):
        np.testing.assert_array_equal(
            merge_prompt_map(ref, np.full((5, 5), value, dtype=np.uint8)), np.full_like(ref, value))


def test_prediction_rules():
    ref = np.tile(np.array([0, 1, 2, 3, 4], dtype=np.uint8), (5, 1))[None, None]
    all_fg = apply_prediction(ref, np.ones((5, 5), dtype=bool))
    np.testing.assert_array_equal(all_fg[0, 0, 0], [0, 2, 3, 3, 4])  # 1 -> 2, not 3
    all_bg = apply_prediction(ref, np.zeros((1, 1, 5, 5), dtype=bool))
    np.testing.assert_array_equal(all_bg[0, 0, 0], [0, 1, 1, 2, 4])  # 3 -> 2, not 1
    mixed = np.zeros((5, 5), dtype=bool)
    mixed[::2] = True
    np.testing.assert_array_equal(apply_prediction(ref, mixed), _ref_prediction(ref, mixed))
    # Two steps of opposite predictions: 2 -> 3 -> 2 (oscillates through unknown).
    two = apply_prediction(apply_prediction(ref, np.ones((5, 5), bool)), np.zeros((5, 5), bool))
    np.testing.assert_array_equal(two[0, 0, 0], [0, 1, 2, 2, 4])


@pytest.mark.parametrize("positive_first", [True, False])
def test_overlapping_positive_and_negative_in_one_call(positive_first):
    pos, neg = Click(x=6, y=8, positive=True), Click(x=10, y=8, positive=False)
    clicks = [pos, neg] if positive_first else [neg, pos]
    out = add_clicks(initial_prompt_map(17), clicks)
    # Overlap pixel (8, 8) is within 5 of both: the kind whose first click is later wins.
    assert out[0, 0, 8, 8] == (DEFINITELY_BACKGROUND if positive_first else DEFINITELY_FOREGROUND)
    assert out[0, 0, 8, 3] == 4 and out[0, 0, 8, 13] == 0
    np.testing.assert_array_equal(out, _ref_add_clicks(initial_prompt_map(17), clicks))


def test_order_is_by_first_click_of_each_kind_not_chronological():
    # pos, neg, pos2 where pos2 overlaps neg: all positive discs are painted first (the first
    # positive click precedes the first negative one), so the negative disc wins over pos2 too.
    clicks = [Click(x=2, y=2, positive=True), Click(x=8, y=8, positive=False), Click(x=11, y=8, positive=True)]
    out = add_clicks(initial_prompt_map(17), clicks)
    assert out[0, 0, 8, 10] == DEFINITELY_BACKGROUND
    np.testing.assert_array_equal(out, _ref_add_clicks(initial_prompt_map(17), clicks))
    # Separate calls instead: the later click overwrites (definite rule).
    step = add_clicks(add_clicks(initial_prompt_map(17), clicks[:2]), clicks[2:])
    assert step[0, 0, 8, 10] == DEFINITELY_FOREGROUND


@pytest.mark.parametrize("y,x", [(0, 0), (0, 16), (16, 0), (16, 16), (0, 8)])
def test_click_on_border_pixel(y, x):
    out = add_clicks(initial_prompt_map(17), [Click(x=x, y=y, positive=False)])
    reference = _ref_add_clicks(initial_prompt_map(17), [Click(x=x, y=y, positive=False)])
    np.testing.assert_array_equal(out, reference)
    assert out[0, 0, y, x] == 0
    expected = 26 if (y in (0, 16) and x in (0, 16)) else 46  # quarter / half of the 81
    assert int((out == 0).sum()) == expected


@pytest.mark.parametrize("seed", range(6))
def test_random_sequences_match_transcription(seed):
    rng = np.random.default_rng(seed)
    size = 19
    ref = rng.integers(0, 5, size=(1, 1, size, size)).astype(np.uint8)
    expected = ref.copy()
    for _ in range(3):
        clicks = [Click(x=int(rng.integers(size)), y=int(rng.integers(size)), positive=bool(rng.integers(2)))
                  for _ in range(int(rng.integers(1, 5)))]
        ref = add_clicks(ref, clicks)
        expected = _ref_add_clicks(expected, clicks)
        np.testing.assert_array_equal(ref, expected)
        pred = rng.random((size, size)) < 0.5
        ref = apply_prediction(ref, pred)
        expected = _ref_prediction(expected, pred)
        np.testing.assert_array_equal(ref, expected)


def test_encode_clicks_only_paints_definite_values_with_default_radii():
    enc = encode_clicks([Click(x=5, y=5, positive=True), Click(x=9, y=5, positive=False)], 15)
    assert set(np.unique(enc).tolist()) == {0, 2, 4}


def test_no_clicks_is_identity_copy():
    ref = initial_prompt_map(8)
    out = add_clicks(ref, [])
    np.testing.assert_array_equal(out, ref)
    assert out is not ref


# ---------------------------------------------------------------------------------------------
# Clicks and scaling.


def test_click_parsing_and_official_tuples():
    c = Click.parse(" 12, 34 ,positive")
    assert (c.y, c.x, c.positive) == (34, 12, True)
    assert Click.parse("1,2,negative") == Click(x=1, y=2, positive=False)
    assert Click.from_official((5, 7, "negative")).to_official() == (5, 7, "negative")
    assert Click(x=np.int32(4), y=np.int64(3), positive=np.bool_(True)) == Click(x=4, y=3, positive=True)
    for bad in ("1,2", "a,2,positive", "1,2,maybe", "1.5,2,positive", "-1,2,positive"):
        with pytest.raises(InputError):
            Click.parse(bad)
    with pytest.raises(InputError):
        Click.from_official((1, 2, "pos"))
    with pytest.raises(InputError):
        Click(x=2, y=1.0, positive=True)  # type: ignore[arg-type]


def test_scale_click_truncates_like_official():
    scale = 512 / 768
    for y, x in [(1, 2), (345, 384), (399, 599), (3, 300)]:
        c = scale_click(Click(x=x, y=y, positive=True), scale)
        assert (c.y, c.x) == (int(scale * y), int(scale * x))
    assert scale_click(Click(x=2, y=1, positive=False), scale) == Click(x=1, y=0, positive=False)
    # 0.1 * 3 = 0.30000000000000004 and 0.7 * 10 = 7.000000000000001: float product, not rounding
    assert scale_click(Click(x=10, y=10, positive=True), 0.7) == Click(x=7, y=7, positive=True)
    assert scale_click(Click(x=10, y=10, positive=True), 0.29) == Click(x=2, y=2, positive=True)  # 2.9 -> 2
    with pytest.raises(InputError):
        scale_click(Click(x=1, y=1, positive=True), 0.0)


# ---------------------------------------------------------------------------------------------
# Malformed input.


def test_malformed_inputs_raise_input_error():
    ref = initial_prompt_map(16)
    with pytest.raises(InputError):
        add_clicks(ref, [Click(x=0, y=16, positive=True)])  # outside the map
    with pytest.raises(InputError):
        add_clicks(ref, [(1, 2, "positive")])  # type: ignore[list-item]
    with pytest.raises(InputError):
        add_clicks(ref.astype(np.int64), [Click(x=1, y=1, positive=True)])
    with pytest.raises(InputError):
        add_clicks(ref[0], [Click(x=1, y=1, positive=True)])
    with pytest.raises(InputError):
        add_clicks(np.full((1, 1, 4, 5), 2, np.uint8), [])
    bad = ref.copy()
    bad[0, 0, 0, 0] = 5
    with pytest.raises(InputError):
        add_clicks(bad, [])
    with pytest.raises(InputError):
        apply_prediction(ref, np.zeros((16, 16), dtype=np.float32))  # logits, not a mask
    with pytest.raises(InputError):
        apply_prediction(ref, np.zeros((8, 8), dtype=bool))
    with pytest.raises(InputError):
        initial_prompt_map(0)
    with pytest.raises(InputError):
        merge_prompt_map(ref, np.zeros((3, 3), np.uint8))


def test_modules_import_without_torch():
    code = ("import i2f_deploy.prompt_map, i2f_deploy.preprocess, sys; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------------------------
# The table merge and the click box against the whole-map definitions.


def test_merge_table_is_the_official_rule_for_every_pair():
    old = np.repeat(np.arange(5, dtype=np.uint8), 5).reshape(1, 1, 5, 5)
    new = np.tile(np.arange(5, dtype=np.uint8), 5).reshape(5, 5)
    merged = merge_prompt_map(old, new)
    for y in range(5):
        for x in range(5):
            assert merged[0, 0, y, x] == _ref_rule(int(old[0, 0, y, x]), int(new[y, x]))


@pytest.mark.parametrize("seed", range(4))
def test_clicks_on_a_large_map_equal_the_whole_map_encoding_merged(seed):
    """add_clicks touches only the box its discs reach; the result is that of encoding on the
    whole fresh map and merging it whole (far-apart clicks, border clicks, both kinds)."""
    rng = np.random.default_rng(seed)
    size = 1024
    ref = rng.integers(0, 5, size=(1, 1, size, size)).astype(np.uint8)
    for count in (1, 2, 5):
        clicks = [Click(x=int(rng.choice([0, size - 1, rng.integers(size)])), y=int(rng.integers(size)),
                        positive=bool(rng.integers(2))) for _ in range(count)]
        whole = merge_prompt_map(ref, encode_clicks(clicks, size))
        out = add_clicks(ref, clicks)
        np.testing.assert_array_equal(out, whole)
        ref = apply_prediction(out, rng.random((size, size)) < 0.5)


def test_merge_refuses_labels_outside_the_five_values():
    ref = initial_prompt_map(4)
    for bad in (np.full((4, 4), 5, np.uint8), np.full((4, 4), -1, np.int64), np.full((4, 4), 2.0)):
        with pytest.raises(InputError):
            merge_prompt_map(ref, bad)
