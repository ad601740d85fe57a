"""Click simulator, IoU/NoC and built-in samples (``i2f_deploy.validate.clicks`` / ``samples``).

Expected click positions are derived by hand from the official protocol (see the module
docstring of ``clicks``): distances are Euclidean to the nearest pixel outside the error region,
the image border counting as outside.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from i2f_deploy.compare import mask_iou
from i2f_deploy.errors import InputError
from i2f_deploy.prompt_map import Click
from i2f_deploy.samples import MAX_SIDE, builtin_samples, sample_names
from i2f_deploy.validate import clicks as clicks_module
from i2f_deploy.validate.clicks import (
    click_loop,
    deepest_pixels,
    error_distance,
    next_click,
    noc,
)

pytestmark = pytest.mark.unit


def _box(shape, y0, y1, x0, x1):
    """Bool mask with rows y0..y1 and columns x0..x1 (inclusive) set."""
    m = np.zeros(shape, bool)
    m[y0:y1 + 1, x0:x1 + 1] = True
    return m


# --- next_click: handcrafted cases ------------------------------------------------------------

def test_first_click_is_positive_at_square_centre():
    gt = _box((9, 9), 2, 6, 2, 6)  # 5x5 square: centre (4, 4) is 3 px from the outside
    assert next_click(np.zeros_like(gt), gt) == Click(x=4, y=4, positive=True)
    assert error_distance(gt)[4, 4] == 3.0


def test_rectangle_ties_go_to_first_in_row_major_order():
    # 5 rows x 7 cols: rows 2..6, cols 3..9. Row 4 is 3 px from rows 1 and 7; columns 5, 6, 7 are
    # at least 3 px from columns 2 and 10, so (4, 5), (4, 6), (4, 7) tie at distance 3.
    gt = _box((10, 12), 2, 6, 3, 9)
    empty = np.zeros_like(gt)
    assert next_click(empty, gt) == Click(x=5, y=4, positive=True)
    # With an RNG the choice is uniform over exactly the tied pixels (as the official code does).
    seen = {next_click(empty, gt, rng=random.Random(seed)) for seed in range(60)}
    assert seen == {Click(x=5, y=4, positive=True), Click(x=6, y=4, positive=True), Click(x=7, y=4, positive=True)}


def test_rng_choice_consumes_generator_like_official_random_choice():
    gt = _box((10, 12), 2, 6, 3, 9)
    candidates = [(4, 5), (4, 6), (4, 7)]
    for seed in range(20):
        expected = candidates[random.Random(seed).choice(range(len(candidates)))]
        click = next_click(np.zeros_like(gt), gt, rng=random.Random(seed))
        assert (click.y, click.x) == expected


def test_image_border_counts_as_background():
    # A 5x5 block in the top-left corner: with the border as background its centre (2, 2) is
    # deepest (3 px); without padding (0, 0) would be (5 px from the block's far edges).
    gt = _box((10, 10), 0, 4, 0, 4)
    assert next_click(np.zeros_like(gt), gt) == Click(x=2, y=2, positive=True)


def test_over_segmentation_gives_negative_click_in_deepest_false_positive():
    gt = _box((20, 30), 2, 6, 2, 6)
    pred = gt.copy()
    pred |= _box(gt.shape, 10, 16, 10, 16)  # compact 7x7 false positive: centre (13, 13), depth 4
    pred |= _box(gt.shape, 18, 19, 0, 29)  # long 2-row strip: larger area (60 > 49), depth 1
    assert next_click(pred, gt) == Click(x=13, y=13, positive=False)


def test_deeper_region_wins_not_larger_one():
    gt = _box((20, 40), 0, 2, 0, 39)  # GT strip 3x40 (120 px), depth 2 (border counts)
    pred = _box(gt.shape, 10, 14, 10, 14)  # 5x5 false positive (25 px), depth 3 at (12, 12)
    assert next_click(pred, gt) == Click(x=12, y=12, positive=False)
    pred = _box(gt.shape, 10, 12, 10, 12)  # 3x3 false positive, depth 2: tie with the strip
    # Equal depths: the official rule picks a negative click (positive only if strictly deeper).
    assert next_click(pred, gt) == Click(x=11, y=11, positive=False)
    pred = _box(gt.shape, 10, 11, 10, 11)  # 2x2 false positive, depth 1 < 2: positive click
    assert next_click(pred, gt) == Click(x=1, y=1, positive=True)


def test_previous_click_pixels_are_excluded_from_error_regions():
    gt = _box((9, 9), 2, 6, 2, 6)
    empty = np.zeros_like(gt)
    # The centre (4, 4) was clicked but is still missed. Depths: the 4 diagonal neighbours are
    # min(2, sqrt 2) = 1.414, the 4 edge neighbours 1, the outer ring 1 -> first diagonal (3, 3).
    assert next_click(empty, gt, [Click(x=4, y=4, positive=True)]) == Click(x=3, y=3, positive=True)
    # A click of either kind is excluded, and it applies to false positives too.
    assert next_click(empty, gt, [Click(x=4, y=4, positive=False)]) == Click(x=3, y=3, positive=True)
    assert next_click(gt, np.zeros_like(gt), [Click(x=4, y=4, positive=True)]) == Click(x=3, y=3, positive=False)


def test_no_error_means_no_click():
    gt = _box((9, 9), 2, 6, 2, 6)
    assert next_click(gt.copy(), gt) is None
    # An error made only of already-clicked pixels leaves nothing to click either.
    pred = gt.copy()
    pred[4, 4] = False
    assert next_click(pred, gt, [Click(x=4, y=4, positive=True)]) is None


def test_single_pixel_errors_are_clicked():
    gt = np.zeros((5, 7), bool)
    gt[4, 6] = True  # corner pixel, depth 1
    assert next_click(np.zeros_like(gt), gt) == Click(x=6, y=4, positive=True)


def _disc(shape, cy, cx, r2):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r2


def test_exact_ties_between_kinds_are_always_negative():
    # A missed disc and an equal false-positive disc: equal depth, so the official rule gives a
    # negative click. OpenCV's float32 depths are noisy in the last bit (the noise depends on
    # where the buffer lands), so only an exact comparison gets this right every time.
    # With float32 depths this radius gave a positive click in ~1% of the calls (opencv 5.0).
    for _ in range(10):
        for width in range(64, 128):
            gt = _disc((44, width), 22, 16, 200)
            pred = _disc((44, width), 22, 48, 200)
            assert deepest_pixels(gt)[0] == deepest_pixels(pred)[0] == 202
            assert next_click(pred, gt) == Click(x=48, y=22, positive=False)


def test_deepest_pixels_exact_squared_depth():
    gt = _box((10, 12), 2, 6, 3, 9)
    depth, pixels = deepest_pixels(gt)
    assert depth == 9 and pixels.tolist() == [[4, 5], [4, 6], [4, 7]]
    assert deepest_pixels(np.zeros((3, 4), bool))[0] == 0
    disc = _disc((41, 41), 20, 20, 200)
    depth, pixels = deepest_pixels(disc)
    # The nearest outside pixel of the centre is at the smallest sum of two squares above 200:
    # 201 is not one, 202 = 11^2 + 9^2.
    assert pixels.tolist() == [[20, 20]] and depth == 202


def test_deep_regions_are_remeasured_exactly(monkeypatch):
    rng = np.random.default_rng(3)
    for _ in range(40):
        region = rng.random((30, 40)) < 0.9
        region[rng.integers(0, 30, 5), rng.integers(0, 40, 5)] = False
        rounded = deepest_pixels(region)
        with monkeypatch.context() as m:
            m.setattr(clicks_module, "_ROUNDING_EXACT_UP_TO", -1.0)
            remeasured = deepest_pixels(region)
        assert rounded[0] == remeasured[0]
        assert np.array_equal(rounded[1], remeasured[1])


def test_very_deep_region():
    gt = np.ones((2101, 2101), bool)  # depth 1051 at the centre: beyond the rounding shortcut
    assert next_click(np.zeros_like(gt), gt) == Click(x=1050, y=1050, positive=True)
    assert deepest_pixels(gt)[0] == 1051 ** 2


def test_next_click_rejects_bad_input():
    gt = _box((9, 9), 2, 6, 2, 6)
    with pytest.raises(InputError):
        next_click(np.zeros((9, 8), bool), gt)
    with pytest.raises(InputError):
        next_click(np.zeros((9, 9), np.uint8), gt)
    with pytest.raises(InputError):
        next_click(np.zeros_like(gt), gt, [Click(x=0, y=9, positive=True)])


# --- iou / noc ----------------------------------------------------------------------------------

def test_iou():
    a = _box((4, 4), 0, 1, 0, 1)  # 4 px
    b = _box((4, 4), 0, 1, 0, 3)  # 8 px, contains a
    assert mask_iou(a, b) == 0.5
    assert mask_iou(a, ~a) == 0.0
    assert mask_iou(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == 1.0  # both empty: they agree
    assert mask_iou(np.zeros((3, 3), bool), np.ones((3, 3), bool)) == 0.0
    with pytest.raises(InputError):
        mask_iou(a, np.zeros((4, 5), bool))


def test_noc_known_sequences():
    assert noc([0.5, 0.86, 0.91, 0.96] + [0.99] * 16) == {0.85: 2, 0.90: 3, 0.95: 4}
    assert noc([0.85] + [0.9] * 19) == {0.85: 1, 0.90: 2, 0.95: 20}  # >= counts; never 0.95
    assert noc([0.1] * 19 + [0.99]) == {0.85: 20, 0.90: 20, 0.95: 20}
    assert noc([0.1] * 20 + [0.99]) == {0.85: 20, 0.90: 20, 0.95: 20}  # only 20 clicks count
    assert noc([0.1, 0.2]) == {0.85: 20, 0.90: 20, 0.95: 20}  # short run that never gets there
    assert noc([0.2, 0.95], thresholds=(0.5,), max_clicks=5) == {0.5: 2}
    assert noc([0.4, 0.3, 0.2], thresholds=(0.9,), max_clicks=3) == {0.9: 3}


def test_noc_matches_official_compute_noc_formula():
    # Official ClickTestLoop.compute_noc: last IoU forced to 1, argmax(iou >= t) + 1.
    rng = np.random.default_rng(0)
    for _ in range(200):
        ious = rng.random(20) ** 0.2
        forced = ious.copy()
        forced[-1] = 1.0
        for t, n in noc(list(ious)).items():
            assert n == int(np.argmax(forced >= t)) + 1


# --- click_loop ---------------------------------------------------------------------------------

def test_click_loop_follows_next_click_and_reports_ious():
    gt = _box((12, 12), 2, 8, 2, 8)
    yy, xx = np.mgrid[:12, :12]
    clicks_seen = []

    def step(click):
        clicks_seen.append(click)
        # A toy model: a disc of radius 2 around each positive click.
        out = np.zeros_like(gt)
        for c in [c for c in clicks_seen if c is not None and c.positive]:
            out |= (yy - c.y) ** 2 + (xx - c.x) ** 2 <= 4
        return out

    run = click_loop(step, gt, num_clicks=6)
    assert run.clicks[0] == Click(x=5, y=5, positive=True)  # centre of the 7x7 square
    assert len(run.predictions) == len(run.ious) == 6
    assert [c for c in clicks_seen if c is not None] == run.clicks
    # Replaying the recorded predictions through next_click gives the same clicks.
    prediction, replay = np.zeros_like(gt), []
    for pred in run.predictions[:len(run.clicks)]:
        replay.append(next_click(prediction, gt, replay))
        prediction = pred
    assert replay == run.clicks
    assert run.ious == [mask_iou(p, gt) for p in run.predictions]


def test_click_loop_passes_none_once_perfect():
    gt = _box((9, 9), 2, 6, 2, 6)
    received = []
    run = click_loop(lambda click: (received.append(click), gt.copy())[1], gt, num_clicks=4)
    assert received == [Click(x=4, y=4, positive=True), None, None, None]
    assert run.ious == [1.0] * 4
    assert run.noc() == {0.85: 1, 0.90: 1, 0.95: 1}


# --- samples ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def samples():
    return builtin_samples()


def test_samples_are_well_formed(samples):
    assert len(samples) >= 10
    names = [s.name for s in samples]
    assert len(set(names)) == len(names) == len(sample_names())
    assert names == sample_names()
    for s in samples:
        h, w = s.mask.shape
        assert s.image.shape == (h, w, 3) and s.image.dtype == np.uint8, s.name
        assert s.image_rgb is s.image
        assert s.mask.dtype == np.bool_, s.name
        assert max(h, w) <= MAX_SIDE, s.name
        area = int(s.mask.sum())
        assert 0 < area < h * w, s.name
        assert s.image.std() > 5, s.name  # not a flat image
        first = next_click(np.zeros_like(s.mask), s.mask)
        assert first.positive and s.mask[first.y, first.x], s.name


def test_samples_cover_the_intended_geometry(samples):
    by_name = {s.name: s for s in samples}
    for name in ("coffee-cup", "chelsea-eye", "rocket", "astronaut-helmet", "coins-coin"):
        assert name in by_name
    for size in ("256x256", "333x517"):
        h, w = map(int, size.split("x"))
        for shape in ("ellipse", "ring", "thin-bar", "border", "tiny-corner"):
            assert by_name[f"{shape}-{size}"].mask.shape == (h, w)
        ring = by_name[f"ring-{size}"].mask
        assert not ring[h // 2, w // 2] and ring.any()
        assert by_name[f"border-{size}"].mask[:, 0].any()
        tiny = by_name[f"tiny-corner-{size}"].mask
        assert tiny[-1, -1] and tiny.sum() == 36
        assert error_distance(by_name[f"thin-bar-{size}"].mask).max() <= 3.0  # 3 px line
    assert by_name["astronaut-helmet"].mask[-1].any()  # the helmet is cut by the bottom border
    assert by_name["coins-coin"].image.std(axis=2).max() == 0  # grayscale photo as RGB


def test_samples_are_deterministic_and_selectable(samples):
    again = builtin_samples(["ring-333x517", "coins-coin"])
    first = {s.name: s for s in samples}
    for s in again:
        assert np.array_equal(s.image, first[s.name].image)
        assert np.array_equal(s.mask, first[s.name].mask)
    with pytest.raises(InputError):
        builtin_samples(["no-such-sample"])
