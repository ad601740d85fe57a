"""The decoder as products call it: the official five features and a prompt map are enough.

The graph also takes the encoder's derived per-image tensors (``edge_conv_*``). A caller that
feeds the encoder's outputs as they are passes them along; a caller holding only the five
official features (a parity check, a feature cache written before) gets them computed from the
edge maps by the artifact's small per-image graph, loaded on first need.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from i2f_deploy.contract import EDGE_CONVS, EDGE_MAPS, REF_LABEL
from i2f_deploy.prompt_map import validate_prompt_map
from i2f_deploy.runtime import GraphRunner, check_inputs


class DecoderRunner:
    def __init__(self, graph: GraphRunner, load_edge_conv: Callable[[], GraphRunner]) -> None:
        self.graph = graph
        self.input_names = graph.input_names
        self.input_shapes = graph.input_shapes
        self.output_names = graph.output_names
        self.kernels = graph.kernels
        self.concurrent = graph.concurrent
        self._load_edge_conv = load_edge_conv
        self._edge_conv: GraphRunner | None = None

    def with_derived(self, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``features`` plus the ``edge_conv_*`` computed from its edge maps, where missing.
        Call it once per image to decode many prompt maps at full speed."""
        if all(name in features for name in EDGE_CONVS):
            return features
        check_inputs(EDGE_MAPS, features)
        if self._edge_conv is None:
            self._edge_conv = self._load_edge_conv()
        return {**features, **self._edge_conv.run({name: features[name] for name in EDGE_MAPS})}

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if REF_LABEL in inputs:  # a missing one is reported with the other missing inputs
            # Else the backends fail with their own errors, or OpenVINO runs on values above 4.
            validate_prompt_map(inputs[REF_LABEL], self.input_shapes[REF_LABEL][-1])
        return self.graph.run(self.with_derived(inputs))
