"""One iteration of the official interactive loop (``interact_test`` of the official target-size
segmentor), the single definition the session, the server and validate's reference loop use:

1. the new click, already scaled to the target size, is added to the prompt map
   (``prompt_map.add_clicks`` with this click only, as the loop adds each new click once);
   the official loop also runs iterations without a new click (``click=None``);
2. the decoder runs on that prompt map;
3. its target-size prediction ``logits > 0`` is folded into the map
   (``prompt_map.apply_prediction``), which is what the next click starts from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from i2f_deploy.contract import LOGITS, NUM_ROUTED
from i2f_deploy.prompt_map import Click, add_clicks, apply_prediction

Decode = Callable[[np.ndarray], dict[str, np.ndarray]]  # prompt map -> decoder outputs


@dataclass(frozen=True, eq=False)
class LoopStep:
    """The loop after one iteration, at the target size (arrays read-only)."""

    prompt_map: np.ndarray  # uint8 [1, 1, S, S]: what the decoder read
    ref_label: np.ndarray  # uint8 [1, 1, S, S]: the prediction folded in, where the next click starts
    logits: np.ndarray  # float32 [1, 1, S, S]
    num_routed: int


def advance(decode: Decode, ref_label: np.ndarray, click: Click | None) -> LoopStep:
    """One iteration from prompt map ``ref_label`` with ``click`` (target-size pixels) or none."""
    prompt_map = ref_label if click is None else add_clicks(ref_label, [click])
    out = decode(prompt_map)
    logits = out[LOGITS]
    after = apply_prediction(prompt_map, logits.reshape(logits.shape[-2:]) > 0)
    for array in (prompt_map, after, logits):
        array.flags.writeable = False
    return LoopStep(prompt_map, after, logits, int(out[NUM_ROUTED]))
