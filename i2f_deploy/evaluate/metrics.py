"""The benchmark's numbers from per-click IoUs (NumPy only).

Per image, ``ious[k-1]`` is the IoU with the ground truth after iteration k of the official loop
(``validate.clicks.click_loop``). Over a set of images:

* NoC@t: mean over images of the first 1-based click with IoU >= t, counting the maximum (the
  number of iterations, 20 officially) when it is never reached: the official ``compute_noc``;
* NoF@t: images that never reach t within the iterations (the official loop does not report it;
  RITM's ``over_max`` counts NoC >= max instead, which also counts reaching t exactly at the last
  click);
* mIoU@k: mean over images of the IoU after click k, for every k (the official loop reports
  k = 1, 2, 3, 4, 5, 10, 15, 20).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from i2f_deploy.validate.clicks import NOC_THRESHOLDS, noc

__all__ = ["latency_summary", "nof_count", "summary"]


def nof_count(per_image: Sequence[Sequence[float]], threshold: float) -> int:
    """Images whose IoU never reaches ``threshold``."""
    return sum(1 for ious in per_image if not any(v >= threshold for v in ious))


def summary(per_image: Sequence[Sequence[float]], max_clicks: int, thresholds: Sequence[float] = NOC_THRESHOLDS) -> dict:
    """NoC, NoF and mIoU@k of one contender over its images (each with ``max_clicks`` IoUs)."""
    if not per_image:
        return {"images": 0}
    table = np.asarray(per_image, dtype=np.float64)
    nocs = [noc(ious, thresholds, max_clicks) for ious in per_image]
    return {
        "images": len(per_image),
        "noc": {f"{round(t * 100)}": float(np.mean([n[t] for n in nocs])) for t in thresholds},
        "nof": {f"{round(t * 100)}": nof_count(per_image, t) for t in thresholds},
        "miou": [float(v) for v in table.mean(axis=0)],
    }


def latency_summary(encoder_ms: Sequence[float], click_ms: Sequence[float]) -> dict:
    """Encoder time per image, decoder step time per click, and their sum per image (means and
    quantiles in ms)."""
    clicks = np.asarray(click_ms, dtype=np.float64)
    encoders = np.asarray(encoder_ms, dtype=np.float64)
    if not clicks.size or not encoders.size:
        return {}
    per_image_clicks = clicks.sum() / encoders.size
    return {
        "encoder_ms_mean": float(encoders.mean()),
        "click_ms_median": float(np.median(clicks)),
        "click_ms_p90": float(np.percentile(clicks, 90)),
        "click_ms_mean": float(clicks.mean()),
        "image_ms_mean": float(encoders.mean() + per_image_clicks),
    }
