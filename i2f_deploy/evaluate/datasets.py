"""Dataset readers for ``evaluate`` and ``validate --dataset``: ``KIND:PATH`` -> image/mask pairs.

Layouts (the official repository's ``DATASETS.md`` and dataset classes):

* ``davis``: ``PATH`` (or ``PATH/DAVIS``) holds ``img/``, ``gt/`` and ``list/val.txt``. Each line
  of the list is an id such as ``bear#001``: the image is ``img/<id before '#'>.*`` (``.jpg``),
  the mask ``gt/<id>.*`` (``.png``); the object is the mask's pixels of value 1 (255 marks void
  boundary, counted as background as the official loader does).
* ``hqseg44k``: ``PATH`` is SAM-HQ's ``data/sam-hq`` folder; its validation split is four
  subsets, in the official order: ``thin_object_detection/COIFT`` (``images/``, ``masks/``),
  ``thin_object_detection/HRSOD`` (``images/``, ``masks_max255/``),
  ``thin_object_detection/ThinObject5K`` (``images_test/``, ``masks_test/``) and
  ``DIS5K/DIS-VD`` (``im/``, ``gt/``). Images ``*.jpg`` and masks ``*.png`` pair by file stem,
  sorted by stem within a subset; the object is every non-zero mask pixel.
* ``folder``: ``PATH`` holds ``images/`` and ``masks/``; files pair by stem (any image format
  OpenCV reads; masks lossless: PNG, BMP or TIFF); the object is every non-zero mask pixel.

A multi-channel mask counts by its first channel. Reading is read-only and streaming: the folders
are listed once (names only), pixels are read one image at a time. A missing, unreadable, empty
or mis-sized file becomes an ``Entry`` with a ``problem``: reported and counted by the callers,
never fatal. Only a path that is not the named layout at all is refused (``I2FError``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from i2f_deploy.errors import I2FError, InputError
from i2f_deploy.preprocess import read_image_rgb

__all__ = ["HQSEG44K_SUBSETS", "KINDS", "DatasetSpec", "Entry", "Sample", "entries", "load"]

KINDS = ("davis", "hqseg44k", "folder")
# subset -> (image folder, mask folder), in the official order
HQSEG44K_SUBSETS = {
    "thin_object_detection/COIFT": ("images", "masks"),
    "thin_object_detection/HRSOD": ("images", "masks_max255"),
    "thin_object_detection/ThinObject5K": ("images_test", "masks_test"),
    "DIS5K/DIS-VD": ("im", "gt"),
}
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class DatasetSpec:
    """``--dataset KIND:PATH`` parsed and checked to be that layout."""

    kind: str
    path: Path

    @classmethod
    def parse(cls, text: str, option: str = "--dataset") -> DatasetSpec:
        kind, sep, path = text.partition(":")
        if not sep or not path:
            raise I2FError(f"{option} {text!r}: expected KIND:PATH with KIND one of {', '.join(KINDS)}")
        if kind not in KINDS:
            raise I2FError(f"{option} {text!r}: unknown kind {kind!r}; choose from {', '.join(KINDS)}")
        spec = cls(kind, Path(path))
        if not spec.path.is_dir():
            raise I2FError(f"{option} {text!r}: {spec.path} is not a directory")
        spec = spec._resolved()
        spec._check_layout(option)
        return spec

    def _resolved(self) -> DatasetSpec:
        """DATASETS.md places DAVIS in ``data/davis/DAVIS``: either folder may be given."""
        if self.kind == "davis" and not (self.path / "list").is_dir() and (self.path / "DAVIS" / "list").is_dir():
            return DatasetSpec(self.kind, self.path / "DAVIS")
        return self

    def _check_layout(self, option: str) -> None:
        if self.kind == "davis":
            needed = [self.path / "img", self.path / "gt", self.path / "list" / "val.txt"]
        elif self.kind == "folder":
            needed = [self.path / "images", self.path / "masks"]
        else:
            if not any((self.path / subset).is_dir() for subset in HQSEG44K_SUBSETS):
                raise I2FError(f"{option}: {self.path} holds none of HQSeg-44K's validation subsets "
                               f"({', '.join(HQSEG44K_SUBSETS)})")
            return
        missing = [str(p.relative_to(self.path)) for p in needed if not p.exists()]
        if missing:
            raise I2FError(f"{option}: {self.path} is not a {self.kind} folder: {', '.join(missing)} missing")

    def __str__(self) -> str:
        return f"{self.kind}:{self.path}"


@dataclass(frozen=True)
class Entry:
    """One image of a dataset as listed: its files, or why it cannot be used."""

    name: str
    image: Path | None
    mask: Path | None
    object_value: int | None  # the mask value of the object; None: every non-zero value
    problem: str = ""


@dataclass(frozen=True)
class Sample:
    """An entry read: RGB uint8 [H, W, 3] and the object mask bool [H, W]."""

    name: str
    image: np.ndarray
    mask: np.ndarray


def _by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """Files of ``folder`` by stem (the first suffix in ``suffixes`` order wins a tie)."""
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir(), key=lambda p: (p.stem, suffixes.index(p.suffix.lower())
                                                        if p.suffix.lower() in suffixes else len(suffixes))):
        if path.is_file() and path.suffix.lower() in suffixes:
            found.setdefault(path.stem, path)
    return found


def _paired(prefix: str, images: dict[str, Path], masks: dict[str, Path], object_value: int | None) -> Iterator[Entry]:
    for stem in sorted(images.keys() | masks.keys()):
        image, mask = images.get(stem), masks.get(stem)
        problem = "" if image and mask else ("no mask" if image else "no image")
        yield Entry(prefix + stem, image, mask, object_value, problem)


def _davis(path: Path) -> Iterator[Entry]:
    images = _by_stem(path / "img", IMAGE_SUFFIXES)
    masks = _by_stem(path / "gt", MASK_SUFFIXES)
    for line in (path / "list" / "val.txt").read_text().splitlines():
        name = line.strip()
        if not name:
            continue
        image, mask = images.get(name.split("#")[0]), masks.get(name)
        missing = [what for what, found in (("img/", image), ("gt/", mask)) if found is None]
        yield Entry(name, image, mask, 1, f"not found in {' and '.join(missing)}" if missing else "")


def _hqseg44k(path: Path) -> Iterator[Entry]:
    for subset, (image_dir, mask_dir) in HQSEG44K_SUBSETS.items():
        images, masks = path / subset / image_dir, path / subset / mask_dir
        absent = [str(folder.relative_to(path)) for folder in (images, masks) if not folder.is_dir()]
        if absent:
            yield Entry(subset, None, None, None, f"subset folder missing: {', '.join(absent)}")
            continue
        yield from _paired(subset.split("/")[-1] + "/", _by_stem(images, (".jpg",)), _by_stem(masks, (".png",)), None)


def _folder(path: Path) -> Iterator[Entry]:
    yield from _paired("", _by_stem(path / "images", IMAGE_SUFFIXES), _by_stem(path / "masks", MASK_SUFFIXES), None)


READERS: dict[str, Callable[[Path], Iterator[Entry]]] = {"davis": _davis, "hqseg44k": _hqseg44k, "folder": _folder}


def entries(spec: DatasetSpec) -> Iterator[Entry]:
    """The dataset's entries in the official order (file names only: nothing is decoded here).
    Names are unique (results are recorded by name): a repeated one is a problem entry."""
    seen: dict[str, int] = {}
    for entry in READERS[spec.kind](spec.path):
        seen[entry.name] = seen.get(entry.name, 0) + 1
        if seen[entry.name] > 1:
            entry = Entry(f"{entry.name} ({seen[entry.name]})", None, None, None, f"{entry.name} listed again")
        yield entry


def _read_mask(path: Path, object_value: int | None) -> np.ndarray:
    """The object of a mask file. PIL keeps a palette PNG's indices (DAVIS's object is index 1),
    which OpenCV would turn into colours."""
    try:
        with Image.open(path) as handle:
            values = np.asarray(handle)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InputError(f"cannot read {path} as a mask ({type(exc).__name__}: {exc})") from None
    if values.ndim == 3:
        values = values[..., 0]
    if values.ndim != 2 or values.size == 0:
        raise InputError(f"cannot read {path} as a mask (shape {list(values.shape)})")
    mask = values == object_value if object_value is not None else values > 0
    if not mask.any():
        if object_value is None:
            raise InputError(f"{path}: no object pixel (non-zero)")
        found = ", ".join(str(v) for v in np.unique(values)[:8])
        raise InputError(f"{path}: no object pixel (value {object_value}; the mask holds {found}: a 0/255 mask "
                         "belongs in a folder dataset)")
    return mask


def load(entry: Entry) -> Sample:
    """Read an entry's pixels; ``InputError`` says what is wrong with its files."""
    if entry.problem or entry.image is None or entry.mask is None:
        raise InputError(entry.problem or "incomplete entry")
    image = read_image_rgb(entry.image)
    mask = _read_mask(entry.mask, entry.object_value)
    if mask.shape != image.shape[:2]:
        raise InputError(f"mask {entry.mask.name} is {mask.shape[1]}x{mask.shape[0]}, "
                         f"image {entry.image.name} is {image.shape[1]}x{image.shape[0]}")
    return Sample(entry.name, image, mask)
