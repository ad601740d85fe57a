"""Discrete decisions of the decoder, and telling a legitimate flip from a defect.

Routing and the DPE box depend only on the integer prompt map, so any disagreement there is a
defect. The DLU box thresholds the coarse logits at ``threshold``: a coarse value within
rounding distance of it may land on either side on another backend, which moves the box and
with it the logits near the object. Such a disagreement is a *flip* when the deciding coarse
value lies within ``epsilon`` of the threshold, otherwise a failure.

HybridMoE gives each routed token the expert with the highest gate score (a sigmoid) plus a
bias. The graph does not output those choices, but the reference's smallest gap between a token's
top two scores says whether another backend's rounding can pick the other expert: a gap within
``EXPERT_EPSILON`` (exactly 0 happens: the sigmoid saturates in float32) may go either way, and
under full attention one token's other expert moves the logits everywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from i2f_deploy.contract import DLU_BOX

DEFAULT_EPSILON = 1e-3
EXPERT_CHOICE = "expert_choice"
# the gate scores of the graphs and the reference agree to about 1e-6; a closer top two is a tie
EXPERT_EPSILON = 1e-5


@dataclass(frozen=True)
class Decision:
    name: str
    reference: list[int]
    candidate: list[int]
    verdict: str  # "agree", "flip" or "fail"
    margin: float | None = None  # distance of the deciding value from its threshold

    def to_dict(self) -> dict:
        return asdict(self)


def exact_decision(name: str, reference: np.ndarray, candidate: np.ndarray) -> Decision:
    """A decision of integer inputs only: it must agree exactly."""
    ref, cand = np.asarray(reference).reshape(-1).tolist(), np.asarray(candidate).reshape(-1).tolist()
    return Decision(name, ref, cand, "agree" if ref == cand else "fail")


def box_region(box: list[int], shape: tuple[int, ...]) -> np.ndarray:
    left, top, right, bottom = box
    region = np.zeros(shape, dtype=bool)
    region[top:bottom, left:right] = True
    return region


def dlu_box_decision(
    reference_box: np.ndarray,
    candidate_box: np.ndarray,
    reference_coarse: np.ndarray,
    threshold: float,
    epsilon: float = DEFAULT_EPSILON,
) -> Decision:
    """Compare DLU boxes; on disagreement, the margin is the smallest ``|coarse - threshold|``
    over the tokens that could move a box edge (those in the two boxes' symmetric difference,
    and the reference box's own border tokens)."""
    ref, cand = np.asarray(reference_box).tolist(), np.asarray(candidate_box).tolist()
    if ref == cand:
        return Decision(DLU_BOX, ref, cand, "agree")
    coarse = np.asarray(reference_coarse, dtype=np.float64).reshape(reference_coarse.shape[-2:])
    inside_ref, inside_cand = box_region(ref, coarse.shape), box_region(cand, coarse.shape)
    left, top, right, bottom = ref
    border = inside_ref.copy()
    border[top + 1 : bottom - 1, left + 1 : right - 1] = False
    deciding = (inside_ref ^ inside_cand) | border
    margin = float(np.abs(coarse[deciding] - threshold).min()) if deciding.any() else float("inf")
    return Decision(DLU_BOX, ref, cand, "flip" if margin <= epsilon else "fail", margin)


def expert_choice_decision(margin: float, logits_passed: bool, epsilon: float = EXPERT_EPSILON) -> Decision:
    """HybridMoE's expert choices, from the reference's smallest top-two gap ``margin``: logits
    that differ in a case whose gap lies within ``epsilon`` are a *flip* (another expert for a
    tied token), not a failure; otherwise the choices are taken to agree (the logits judge)."""
    return Decision(EXPERT_CHOICE, [], [], "flip" if margin <= epsilon and not logits_passed else "agree", margin)
