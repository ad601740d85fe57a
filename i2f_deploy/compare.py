"""One comparison helper for tests and ``validate``: a candidate array against a reference, with
an absolute+relative tolerance and a tolerated share of mismatching elements (the scheme of ONNX
Runtime's SAM2 tools), and the IoU of masks and of logits' masks. NumPy only."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from i2f_deploy.errors import InputError


@dataclass(frozen=True)
class Tolerance:
    """``|a - b| <= atol + rtol * |b|`` must hold for all but ``max_mismatch`` of the elements."""

    atol: float
    rtol: float = 0.0
    max_mismatch: float = 0.0


@dataclass(frozen=True)
class Comparison:
    max_abs: float
    max_rel: float
    mismatch_share: float
    iou: float | None
    passed: bool
    problem: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks of one shape; 1.0 when both are empty.

    The official metric returns 0.0 for an empty union, but it never meets one: ground truths
    are never empty. Here masks of two backends are compared too, where empty == empty agrees.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != np.bool_ or b.dtype != np.bool_:
        raise InputError(f"masks must be bool, got {a.dtype} and {b.dtype}")
    if a.shape != b.shape:
        raise InputError(f"masks differ in shape: {list(a.shape)} vs {list(b.shape)}")
    union = int(np.count_nonzero(a | b))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(a & b)) / union


def logits_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of the positive-logit masks ([..., H, W] with unit leading axes)."""
    a, b = np.asarray(a), np.asarray(b)
    return mask_iou(a.reshape(a.shape[-2:]) > 0, b.reshape(b.shape[-2:]) > 0)


def compare(candidate: np.ndarray, reference: np.ndarray, tolerance: Tolerance, logits: bool = False) -> Comparison:
    """Errors of ``candidate`` against ``reference``; shapes and dtypes must agree first."""
    if candidate.shape != reference.shape:
        return Comparison(np.inf, np.inf, 1.0, None, False, f"shape {list(candidate.shape)} != {list(reference.shape)}")
    if candidate.dtype != reference.dtype:
        return Comparison(np.inf, np.inf, 1.0, None, False, f"dtype {candidate.dtype} != {reference.dtype}")
    a, b = candidate.astype(np.float64), reference.astype(np.float64)
    if not np.isfinite(a).all():
        return Comparison(np.inf, np.inf, 1.0, None, False, "non-finite values")
    diff = np.abs(a - b)
    max_abs = float(diff.max(initial=0.0))
    max_rel = float((diff / np.maximum(np.abs(b), 1e-12)).max(initial=0.0))
    share = float((diff > tolerance.atol + tolerance.rtol * np.abs(b)).mean()) if diff.size else 0.0
    iou = logits_iou(candidate, reference) if logits else None
    passed = share <= tolerance.max_mismatch
    return Comparison(max_abs, max_rel, share, iou, passed, "" if passed else f"{share:.3%} of elements beyond tolerance")


def assert_close(candidate: np.ndarray, reference: np.ndarray, atol: float, rtol: float = 0.0,
                 max_mismatch: float = 0.0, what: object = "") -> Comparison:
    """:func:`compare` on the values (any float dtypes), raising ``AssertionError`` with the
    figures when it fails: the tests' check."""
    as_float = [np.asarray(array, dtype=np.float64) for array in (candidate, reference)]
    result = compare(as_float[0], as_float[1], Tolerance(atol, rtol, max_mismatch))
    if not result.passed:
        raise AssertionError(f"{what}{': ' if what != '' else ''}{result.problem}: "
                             f"max abs {result.max_abs:.3g}, max rel {result.max_rel:.3g} "
                             f"(atol {atol:g}, rtol {rtol:g}, tolerated share {max_mismatch:g})")
    return result
