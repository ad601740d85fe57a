"""The interactive core: the state after a click sequence on an encoded image, from the states
already known. ``InteractiveSession`` (one user, in process) and the server's ``Engine`` (many
users, a queue and threads) are two façades over it.

The pieces, each defined once in ``runtime/``:

* ``features``: an image's content id and the byte-budget cache of encoder outputs;
* ``states``: the prompt-map and logits codecs and the click-state prefix cache;
* ``history``: undo and redo over a click sequence;
* ``polygons``: a mask's outlines;
* ``loop.advance``: one click of the official interactive loop;
* ``segment`` here: the state after ``clicks``, continuing from the longest known prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np

from i2f_deploy.preprocess import Geometry, to_target_click
from i2f_deploy.prompt_map import Click, initial_prompt_map
from i2f_deploy.runtime.loop import Decode, advance
from i2f_deploy.runtime.states import ClickStates, State


@cache
def start_map(size: int) -> np.ndarray:
    """The read-only prompt map before any click, uint8 [1, 1, size, size]."""
    ref_label = initial_prompt_map(size)
    ref_label.flags.writeable = False
    return ref_label


def segment(decode: Decode, image_id: str, geometry: Geometry, clicks: Sequence[Click], states: ClickStates,
            keep_last: bool = True, held: tuple[tuple[Click, ...], State | None] = ((), None),
            later: bool = False) -> tuple[State | None, int]:
    """The state after ``clicks`` (image pixels, in order) on image ``image_id`` and the decoder
    runs it took. ``decode`` runs the decoder on the image's features and a prompt map.

    A state whose logits ``states`` keeps costs nothing; else the loop continues from the longest
    known prefix of ``clicks`` (one decoder run per remaining click), and every state it passes
    is put in ``states`` (prompt map only), the last one unless ``keep_last`` is False (a caller
    that holds it and puts it once it moves on). ``held`` is such a caller's state and its
    clicks: a known prefix too. ``later``: those states are packed on ``states``' thread
    (``ClickStates.put(later=True)``), off the caller's path. ``clicks`` are checked against the
    image first."""
    clicks = tuple(clicks)
    targets = [to_target_click(click, geometry) for click in clicks]
    if not clicks:
        return None, 0
    state = states.take(image_id, clicks)
    if state is not None:
        return state, 0
    known, ref_label = 0, start_map(geometry.target_size)
    held_clicks, held_state = held
    if held_state is not None and len(held_clicks) < len(clicks) and clicks[:len(held_clicks)] == held_clicks:
        known, ref_label = len(held_clicks), held_state.ref_label
    if known < len(clicks) - 1:
        cached, cached_map = states.longest_prefix(image_id, clicks, len(clicks) - 1)
        if cached > known and cached_map is not None:
            known, ref_label = cached, cached_map
    for index in range(known, len(clicks)):
        step = advance(decode, ref_label, targets[index])
        state = State(step.ref_label, step.logits, step.num_routed)
        if keep_last or index < len(clicks) - 1:
            states.put(image_id, clicks[:index + 1], state, later=later)
        ref_label = step.ref_label
    return state, len(clicks) - known
