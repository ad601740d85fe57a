"""Exported decoders against the PyTorch model on prompt states the golden cases do not reach:
a DLU box strictly inside the image, and no coarse token above threshold (whole-image box)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support.commands import export_with, save_checkpoint

from i2f_deploy import runtime
from i2f_deploy.compare import assert_close
from i2f_deploy.model.inter2former import build_model

pytestmark = pytest.mark.graph

FEATURES = ("image_embeddings", "edge_map_0", "edge_map_1", "edge_map_2", "edge_map_3")
CASES = ("loop0", "state_medium", "state_small", "state_border")


@pytest.fixture(scope="module", params=[-2.5, -1000.0], ids=["partial-box", "no-token-above-threshold"])
def crafted(request, tmp_path_factory, tiny_config, tiny_checkpoint):
    """The golden weights with the DLU locator's last bias shifted, exported."""
    model = build_model(tiny_config, tiny_checkpoint)
    with torch.no_grad():
        model.decode_head.mlp[6].bias += request.param
    folder = tmp_path_factory.mktemp("crafted")
    out = export_with(save_checkpoint(model, folder / "crafted.pth"), "inter2former-tiny-512", folder / "art")
    return request.param, model, out


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_crafted_dlu_boxes_match_pytorch(crafted, golden, golden_encoded, backend):
    shift, model, artifacts = crafted
    decoder = runtime.load(artifacts, "decoder", backend)
    features = {name: golden[name] for name in FEATURES}
    boxes = []
    for case in CASES:
        ref_label = golden[f"{case}/ref_label"]
        out = decoder.run({**features, "ref_label": ref_label})
        reference = model.decode_detailed(*golden_encoded, torch.from_numpy(ref_label))
        np.testing.assert_array_equal(out["dlu_box"], reference.dlu_box.as_tensor().numpy())
        assert_close(out["logits"], reference.logits.numpy(), atol=1e-3, what=case)
        boxes.append(out["dlu_box"].tolist())
    if shift == -1000.0:
        assert all(box == [0, 0, 32, 32] for box in boxes)
    else:
        assert all(box != [0, 0, 32, 32] for box in boxes)
