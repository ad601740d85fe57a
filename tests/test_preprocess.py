"""Preprocessing and the logits inverse against the official golden input and PyTorch."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from i2f_deploy.errors import InputError
from i2f_deploy.preprocess import (
    Geometry,
    geometry_for,
    logits_to_image,
    logits_to_mask,
    preprocess,
    resize_bilinear,
    to_target_click,
)
from i2f_deploy.prompt_map import Click

pytestmark = pytest.mark.unit

TOL = 1e-5


def _torch_interp(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return F.interpolate(torch.from_numpy(array), size=size, mode="bilinear",
                         align_corners=False).numpy()


def _torch_preprocess(image_rgb: np.ndarray, target: int) -> np.ndarray:
    """The official test path written with torch: BGR, normalise, pad /256, square, resize."""
    bgr = torch.from_numpy(np.ascontiguousarray(image_rgb[:, :, ::-1])).permute(2, 0, 1)[None]
    mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
    x = (bgr.float() - mean) / std
    h, w = x.shape[-2:]
    ph, pw = -(-h // 256) * 256, -(-w // 256) * 256
    x = F.pad(x, (0, pw - w, 0, ph - h))
    side = max(ph, pw)
    x = F.pad(x, (0, side - pw, 0, side - ph))
    return F.interpolate(x, size=(target, target), mode="bilinear", align_corners=False).numpy()


def test_preprocess_matches_golden_input(golden, golden_meta, golden_rgb):
    assert golden_rgb.shape == (400, 600, 3)
    x, geometry = preprocess(golden_rgb, golden_meta["target_size"])
    expected = golden["input"]
    assert x.dtype == np.float32 and x.shape == expected.shape
    err = float(np.abs(x - expected).max())
    assert err <= TOL, f"max abs error {err}"
    assert geometry == Geometry(400, 600, 768, 512)
    assert geometry.scale == golden_meta["scale"]


def test_preprocess_channel_order_matters(golden, golden_rgb):
    """Feeding BGR where RGB is expected (or skipping the flip) is caught by the golden input."""
    x, _ = preprocess(np.ascontiguousarray(golden_rgb[:, :, ::-1]), 512)
    assert float(np.abs(x - golden["input"]).max()) > 0.1


@pytest.mark.parametrize("shape,target", [((300, 200), 256), ((256, 256), 256), ((257, 100), 128),
                                          ((513, 700), 1024), ((50, 30), 64)])
def test_preprocess_matches_torch_pipeline(shape, target):
    rng = np.random.default_rng(sum(shape) + target)
    image = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    x, geometry = preprocess(image, target)
    expected = _torch_preprocess(image, target)
    assert x.shape == (1, 3, target, target)
    assert float(np.abs(x - expected).max()) <= TOL
    assert (geometry.height, geometry.width, geometry.target_size) == (*shape, target)


@pytest.mark.parametrize("in_hw,out_hw", [
    ((37, 53), (100, 29)), ((512, 512), (768, 768)), ((64, 80), (96, 50)), ((87, 122), (17, 63)),
    ((768, 768), (512, 512)), ((5, 6), (1, 1)), ((1, 1), (4, 7)), ((9, 9), (9, 9)),
    ((300, 200), (1000, 128)),
])
def test_resize_bilinear_matches_torch(in_hw, out_hw):
    rng = np.random.default_rng(in_hw[0] * 1000 + out_hw[1])
    array = rng.standard_normal((2, 3, *in_hw)).astype(np.float32) * 3
    ours = resize_bilinear(array, *out_hw)
    expected = _torch_interp(array, out_hw)
    assert ours.dtype == np.float32 and ours.shape == expected.shape
    err = float(np.abs(ours - expected).max())
    assert err <= TOL, f"max abs error {err}"


def test_resize_bilinear_is_not_a_different_interpolation():
    """cv2's fixed-point bilinear or align_corners=True would miss the tolerance: the test bites."""
    rng = np.random.default_rng(0)
    array = rng.standard_normal((1, 1, 40, 40)).astype(np.float32) * 50
    expected = _torch_interp(array, (97, 61))
    corners = F.interpolate(torch.from_numpy(array), size=(97, 61), mode="bilinear",
                            align_corners=True).numpy()
    assert float(np.abs(corners - expected).max()) > TOL
    assert float(np.abs(resize_bilinear(array, 97, 61) - expected).max()) <= TOL


@pytest.mark.parametrize("case", ["loop0", "loop1", "loop2"])
def test_logits_to_image_matches_torch_on_golden(golden, golden_rgb, case):
    _, geometry = preprocess(golden_rgb, 512)
    logits = golden[f"{case}/logits"]
    expected = _torch_interp(logits, (768, 768))[0, 0, :400, :600]
    ours = logits_to_image(logits, geometry)
    assert ours.shape == (400, 600) and ours.dtype == np.float32
    assert float(np.abs(ours - expected).max()) <= TOL
    np.testing.assert_array_equal(ours > 0, expected > 0)
    np.testing.assert_array_equal(logits_to_mask(logits, geometry), expected > 0)
    np.testing.assert_array_equal(logits_to_image(logits[0, 0], geometry), ours)


@pytest.mark.parametrize("hw,target", [((1024, 1536), 1024), ((1536, 1024), 1024), ((1000, 1500), 2048),
                                       ((333, 777), 1024), ((6000, 4000), 1024)])
def test_logits_to_image_and_mask_at_deployment_sizes_match_torch(hw, target):
    """The float32 upsampling: logits within TOL of PyTorch's, and the same mask wherever
    PyTorch's logit is not within float32 rounding of 0."""
    rng = np.random.default_rng(hw[0] * 7 + target)
    geometry = geometry_for(*hw, target)
    logits = (rng.standard_normal((1, 1, target, target)) * 10).astype(np.float32)
    side = geometry.padded_side
    expected = _torch_interp(logits, (side, side))[0, 0, :hw[0], :hw[1]]
    ours = logits_to_image(logits, geometry)
    assert ours.shape == hw and ours.dtype == np.float32
    assert float(np.abs(ours - expected).max()) <= TOL
    away = np.abs(expected) > TOL
    assert away.mean() > 0.99
    np.testing.assert_array_equal((ours > 0)[away], (expected > 0)[away])
    np.testing.assert_array_equal(logits_to_mask(logits, geometry), ours > 0)


@pytest.mark.parametrize("hw,target", [((300, 1000), 256), ((700, 90), 384), ((256, 256), 512)])
def test_logits_to_image_matches_torch_random(hw, target):
    rng = np.random.default_rng(hw[0] + hw[1])
    geometry = geometry_for(*hw, target)
    logits = (rng.standard_normal((1, 1, target, target)) * 10).astype(np.float32)
    side = geometry.padded_side
    expected = _torch_interp(logits, (side, side))[0, 0, :hw[0], :hw[1]]
    ours = logits_to_image(logits, geometry)
    assert ours.shape == hw
    assert float(np.abs(ours - expected).max()) <= TOL


def test_geometry():
    assert geometry_for(400, 600, 512) == Geometry(400, 600, 768, 512)
    assert geometry_for(256, 256, 1024).padded_side == 256
    assert geometry_for(257, 10, 1024).padded_side == 512
    assert geometry_for(10, 1025, 1024).padded_side == 1280
    assert geometry_for(400, 600, 512).scale == 512 / 768


def test_to_target_click_truncates_and_checks_bounds():
    geometry = geometry_for(400, 600, 512)
    scale = 512 / 768
    for y, x in [(0, 0), (1, 2), (345, 384), (399, 599), (200, 301)]:
        c = to_target_click(Click(x=x, y=y, positive=True), geometry)
        assert (c.y, c.x, c.positive) == (int(scale * y), int(scale * x), True)
    assert to_target_click(Click(x=2, y=1, positive=False), geometry) == Click(x=1, y=0, positive=False)
    for y, x in [(400, 0), (0, 600), (500, 700)]:
        with pytest.raises(InputError):
            to_target_click(Click(x=x, y=y, positive=True), geometry)


@pytest.mark.parametrize("bad", [
    np.zeros((10, 10, 3), dtype=np.float32),
    np.zeros((10, 10), dtype=np.uint8),
    np.zeros((10, 10, 4), dtype=np.uint8),
    np.zeros((0, 10, 3), dtype=np.uint8),
    np.zeros((10, 0, 3), dtype=np.uint8),
    np.zeros((1, 10, 10, 3), dtype=np.uint8),
    [[[0, 0, 0]]],
])
def test_bad_images_raise(bad):
    with pytest.raises(InputError):
        preprocess(bad, 256)


def test_bad_arguments_raise():
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    for target in (0, -5, 2.5, True):
        with pytest.raises(InputError):
            preprocess(image, target)
    geometry = geometry_for(10, 10, 64)
    with pytest.raises(InputError):
        logits_to_image(np.zeros((1, 1, 32, 32), np.float32), geometry)
    with pytest.raises(InputError):
        logits_to_image(np.zeros((64, 64), np.int32), geometry)
    with pytest.raises(InputError):
        logits_to_image(np.zeros((64, 64), np.float32), (10, 10, 256, 64))  # type: ignore[arg-type]
    with pytest.raises(InputError):
        resize_bilinear(np.zeros((4, 4), np.float64), 2, 2)
    with pytest.raises(InputError):
        resize_bilinear(np.zeros((4, 4), np.float32), 0, 2)


def test_logits_are_upsampled_by_numpy_without_the_native_library(tmp_path):
    """Installed without a C++ compiler (no kernel library): preprocess imports, says it upsamples
    with NumPy, and does."""
    script = ("import numpy as np; from i2f_deploy import preprocess as p; g = p.geometry_for(300, 200, 256); "
              "m = p.logits_to_mask(np.ones((256, 256), np.float32), g); print(p.UPSAMPLING, m.shape, m.all())")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**os.environ, "I2F_NATIVE_LIB_DIR": str(tmp_path)})
    assert run.stdout.strip() == "numpy (300, 200) True"
