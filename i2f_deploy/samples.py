"""Built-in test images with object masks, so ``i2f-deploy validate`` needs no data download.

Photographs are files shipped inside scikit-image (``skimage.data``, no network), each with a
deterministic mask checked by eye on overlays: hand-placed ellipses/polygons in the photo's
original pixel coordinates (coffee cup with handle, cat's left eye, rocket, astronaut's helmet
cut by the bottom border) or a threshold recipe (one coin: Otsu, its connected component, holes
filled). Photos longer than ``MAX_SIDE`` px (only the 427x640 rocket) are shrunk with
``INTER_AREA``, the full-size mask likewise and re-thresholded at one half, which keeps a
20-click loop per image fast; the model resizes to its target size anyway.

Synthetic images cover geometry the photos do not: an ellipse, a ring (hole is background), a
3 px thin bar, an object cut by the image border and a 6x6 object in the bottom-right corner,
each at 256x256 and at the non-square 333x517. Their texture comes from fixed-seed PCG64 noise.

scikit-image is imported by the photo builders only: the names are known without it (the
command line's help lists them)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from i2f_deploy.errors import InputError

__all__ = ["MAX_SIDE", "SYNTHETIC_SIZES", "Sample", "builtin_samples", "sample_names"]

MAX_SIDE = 600
SYNTHETIC_SIZES = ((256, 256), (333, 517))


@dataclass(frozen=True)
class Sample:
    """A test image (RGB uint8 HxWx3) and the mask (bool HxW) of the object to segment."""

    name: str
    image: np.ndarray
    mask: np.ndarray

    @property
    def image_rgb(self) -> np.ndarray:
        """Alias of ``image`` (it is RGB)."""
        return self.image


# --- photographs --------------------------------------------------------------------------------

def _ellipse(shape: tuple[int, int], center: tuple[int, int], axes: tuple[int, int],
             angle: float = 0.0) -> np.ndarray:
    """Filled ellipse; ``center`` and ``axes`` are (x, y) as in OpenCV."""
    canvas = np.zeros(shape, np.uint8)
    cv2.ellipse(canvas, center, axes, angle, 0, 360, 1, thickness=-1)
    return canvas.astype(bool)


def _polygon(shape: tuple[int, int], points: list[tuple[int, int]]) -> np.ndarray:
    """Filled polygon with (x, y) vertices."""
    canvas = np.zeros(shape, np.uint8)
    cv2.fillPoly(canvas, [np.array(points, np.int32)], 1)
    return canvas.astype(bool)


def _coffee() -> tuple[np.ndarray, np.ndarray]:
    """The espresso cup without saucer and spoon: rim ellipse, tapering body, handle."""
    from skimage import data

    image = data.coffee()
    shape = image.shape[:2]
    rim = _ellipse(shape, (293, 98), (119, 80))
    body = _polygon(shape, [(175, 100), (412, 100), (400, 165), (384, 200), (362, 236),
                            (338, 262), (326, 280), (252, 282), (215, 232), (188, 195)])
    handle = _ellipse(shape, (226, 265), (30, 42), -10)
    return image, rim | body | handle


def _chelsea() -> tuple[np.ndarray, np.ndarray]:
    """The cat's left eye (image left): a small, well-contrasted object."""
    from skimage import data

    image = data.chelsea()
    return image, _ellipse(image.shape[:2], (172, 116), (37, 30), 8)


def _rocket() -> tuple[np.ndarray, np.ndarray]:
    """The launch vehicle: tall and thin, nose cone to the pad."""
    from skimage import data

    image = data.rocket()
    mask = _polygon(image.shape[:2], [(321, 127), (328, 132), (333, 147), (335, 168), (332, 174),
                                      (332, 400), (313, 400), (313, 174), (309, 168), (310, 147),
                                      (314, 132)])
    return image, mask


def _astronaut() -> tuple[np.ndarray, np.ndarray]:
    """The helmet in the lower right, cut by the bottom border."""
    from skimage import data

    image = data.astronaut()
    return image, _ellipse(image.shape[:2], (391, 459), (114, 114))


def _coins() -> tuple[np.ndarray, np.ndarray]:
    """The large coin on the right: Otsu threshold, its connected component, holes filled."""
    from skimage import data, filters, measure

    gray = data.coins()
    labels = measure.label(gray > filters.threshold_otsu(gray), connectivity=2)
    coin = labels == labels[186, 347]
    outside = measure.label(~coin, connectivity=1)
    mask = outside != outside[0, 0]  # the coin with its holes filled (it does not touch the border)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB), mask


_PHOTOS: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {
    "coffee-cup": _coffee,
    "chelsea-eye": _chelsea,
    "rocket": _rocket,
    "astronaut-helmet": _astronaut,
    "coins-coin": _coins,
}


def _shrink(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = mask.shape
    scale = MAX_SIDE / max(h, w)
    if scale >= 1.0:
        return image, mask
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    small_mask = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5
    return small, small_mask


# --- synthetic shapes ---------------------------------------------------------------------------

def _shape_masks(h: int, w: int) -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    s = min(h, w)
    cy, cx = h / 2, w / 2
    # rotated ellipse
    c, sn = np.cos(np.pi / 6), np.sin(np.pi / 6)
    u, v = (xx - cx) * c + (yy - cy) * sn, -(xx - cx) * sn + (yy - cy) * c
    ellipse = (u / (0.36 * w)) ** 2 + (v / (0.22 * h)) ** 2 <= 1
    r = np.hypot(yy - cy, xx - cx)
    ring = (r >= 0.18 * s) & (r <= 0.32 * s)
    bar = np.zeros((h, w), np.uint8)
    cv2.line(bar, (int(0.1 * w), int(0.85 * h)), (int(0.9 * w), int(0.15 * h)), 1, thickness=3)
    bar = bar.astype(bool)
    border = np.hypot(yy - 0.3 * h, xx + 0.1 * w) <= 0.35 * s  # disc centre left of the image
    tiny = np.zeros((h, w), bool)
    tiny[h - 6:, w - 6:] = True
    return {"ellipse": ellipse, "ring": ring, "thin-bar": bar, "border": border, "tiny-corner": tiny}


def _texture(rng: np.random.Generator, h: int, w: int, base: tuple[int, int, int],
             amplitude: float) -> np.ndarray:
    """A smooth colour field with blurred noise, so features are not flat."""
    noise = cv2.GaussianBlur(rng.standard_normal((h, w, 3)).astype(np.float32), (0, 0), 3)
    ramp = np.linspace(-20, 20, w, dtype=np.float32)[None, :, None]
    return np.asarray(base, np.float32) + ramp + amplitude * noise


def _synthetic(name: str, h: int, w: int, mask: np.ndarray, seed: int) -> Sample:
    rng = np.random.default_rng(seed)
    background = _texture(rng, h, w, (90, 120, 150), 40.0)
    foreground = _texture(rng, h, w, (200, 110, 60), 25.0)
    image = np.where(mask[..., None], foreground, background)
    return Sample(f"{name}-{h}x{w}", np.clip(np.rint(image), 0, 255).astype(np.uint8), mask)


def _all_builders() -> dict[str, Callable[[], Sample]]:
    builders: dict[str, Callable[[], Sample]] = {}
    for name, make in _PHOTOS.items():
        def build(name: str = name, make: Callable = make) -> Sample:
            return Sample(name, *_shrink(*make()))
        builders[name] = build
    seed = 0
    for h, w in SYNTHETIC_SIZES:
        for shape in _shape_masks(h, w):
            def build_synthetic(shape: str = shape, h: int = h, w: int = w, seed: int = seed) -> Sample:
                return _synthetic(shape, h, w, _shape_masks(h, w)[shape], seed)
            builders[f"{shape}-{h}x{w}"] = build_synthetic
            seed += 1
    return builders


def sample_names() -> list[str]:
    """Names of all built-in samples, in the order ``builtin_samples`` returns them."""
    return list(_all_builders())


def builtin_samples(names: Iterable[str] | None = None) -> list[Sample]:
    """The built-in samples (all, or those named), photographs first."""
    builders = _all_builders()
    if names is None:
        return [build() for build in builders.values()]
    chosen = list(names)
    unknown = [n for n in chosen if n not in builders]
    if unknown:
        raise InputError(f"unknown sample(s) {', '.join(unknown)}; choose from {', '.join(builders)}")
    return [builders[n]() for n in chosen]
