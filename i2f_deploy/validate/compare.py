"""One comparison helper for tests, ``validate`` and ``bench``: a candidate array against a
reference, with an absolute+relative tolerance and a tolerated share of mismatching elements
(the scheme of ONNX Runtime's SAM2 tools), plus mask IoU for logits."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from i2f_deploy.validate.clicks import iou


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
    """IoU of the positive-logit masks ([..., H, W] with unit leading axes); empty == empty is 1."""
    a, b = np.asarray(a), np.asarray(b)
    return iou(a.reshape(a.shape[-2:]) > 0, b.reshape(b.shape[-2:]) > 0)


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
    iou = mask_iou(candidate, reference) if logits else None
    passed = share <= tolerance.max_mismatch
    return Comparison(max_abs, max_rel, share, iou, passed, "" if passed else f"{share:.3%} of elements beyond tolerance")
