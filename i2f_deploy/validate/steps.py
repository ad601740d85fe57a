"""One image's side of the official click loop on any decoder (NumPy only, no torch).

``click_loop`` (``validate.clicks``) decides the clicks; ``LoopSteps.step`` plays each one through
``runtime.loop.advance`` at the target size and returns the prediction at image resolution.
validate's PyTorch reference and evaluate's graph contenders both step this way, so the two
commands run one loop.
"""

from __future__ import annotations

import numpy as np

from i2f_deploy.preprocess import Geometry, logits_to_image, to_target_click
from i2f_deploy.prompt_map import Click, initial_prompt_map
from i2f_deploy.runtime.loop import Decode, advance


class LoopSteps:
    """The loop's state on one image: the prompt map the next click starts from, and the prompt
    map the decoder read at every iteration (validate feeds those to the backends).

    The protocol also runs iterations without a new click (``click=None``), which is why this
    drives ``advance`` itself rather than an ``InteractiveSession``."""

    def __init__(self, decode: Decode, geometry: Geometry) -> None:
        self.decode = decode
        self.geometry = geometry
        self.ref_label = initial_prompt_map(geometry.target_size)
        self.prompt_maps: list[np.ndarray] = []

    def step(self, click: Click | None) -> np.ndarray:
        """One iteration with ``click`` (image pixels) or none; the bool prediction [H, W]."""
        target_click = None if click is None else to_target_click(click, self.geometry)
        step = advance(self.decode, self.ref_label, target_click)
        self.prompt_maps.append(step.prompt_map)
        self.ref_label = step.ref_label
        return logits_to_image(step.logits, self.geometry) > 0
