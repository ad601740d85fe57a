"""The PyTorch model against the official implementation's golden vectors (tiny512)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support.golden import DECODER_CASES

from i2f_deploy.compare import assert_close, logits_iou

pytestmark = pytest.mark.unit


def test_encoder_matches_golden(tiny_model, golden):
    embeddings, edge_maps = tiny_model.encode(torch.from_numpy(golden["input"]))
    assert_close(embeddings.numpy(), golden["image_embeddings"], atol=1e-4)
    for index, edge_map in enumerate(edge_maps):
        reference = golden[f"edge_map_{index}"]
        assert edge_map.shape == reference.shape
        off = np.abs(edge_map.numpy() - reference) > 1e-3
        assert off.mean() <= 1e-3, f"edge_map_{index}: {off.mean():.2%} of elements off by >1e-3"


def test_portable_numerics_stay_close_to_the_official_ones(tiny_config, tiny_checkpoint, golden, golden_encoded):
    """The portable edge-detector arithmetic (what the exported encoder computes) changes only
    rounding-level decisions: same embeddings, and masks within the golden README's bar of the
    official logits (measured: IoU 0.998)."""
    from i2f_deploy.model.inter2former import build_model

    model = build_model(tiny_config, tiny_checkpoint)
    model.edge_detector.use_numerics("portable")
    embeddings, edge_maps = model.encode(torch.from_numpy(golden["input"]))
    assert_close(embeddings.numpy(), golden_encoded[0].numpy(), atol=1e-4)
    assert any(not np.array_equal(e.numpy(), golden[f"edge_map_{i}"]) for i, e in enumerate(edge_maps))
    for case in DECODER_CASES:
        logits = model.decode(embeddings, edge_maps, torch.from_numpy(golden[f"{case}/ref_label"]))
        assert logits_iou(logits.numpy(), golden[f"{case}/logits"]) >= 0.99, case


def test_unknown_numerics_are_refused(tiny_model):
    with pytest.raises(ValueError, match="numerics"):
        tiny_model.edge_detector.use_numerics("fast")


@pytest.mark.parametrize("case", DECODER_CASES)
def test_decoder_case_matches_golden(tiny_model, golden, golden_encoded, case):
    embeddings, edge_maps = golden_encoded
    result = tiny_model.decode_detailed(embeddings, edge_maps, torch.from_numpy(golden[f"{case}/ref_label"]))
    np.testing.assert_array_equal(np.sort(result.routed_tokens.numpy()), golden[f"{case}/full_attention_tokens"])
    np.testing.assert_array_equal(result.routing.core_box.numpy(), golden[f"{case}/dpe_bbox"])
    np.testing.assert_array_equal(result.dlu_box.as_tensor().numpy(), golden[f"{case}/dlu_bbox"])
    assert_close(result.neck_out.numpy(), golden[f"{case}/neck_out"], atol=1e-4)
    assert_close(result.coarse_logits.numpy(), golden[f"{case}/coarse_logits"], atol=1e-4)
    assert_close(result.logits.numpy(), golden[f"{case}/logits"], atol=1e-3)


def test_neck_blocks_match_golden(tiny_model, golden, golden_encoded):
    embeddings, _ = golden_encoded
    output = tiny_model.neck(embeddings, torch.from_numpy(golden["state_medium/ref_label"]))
    for index, tokens in enumerate(output.block_outputs):
        assert_close(tokens.numpy(), golden[f"state_medium/block_{index}"], atol=1e-4)


def test_dlu_crops_to_the_located_box(tiny_model, golden, golden_encoded):
    _, edge_maps = golden_encoded
    with torch.no_grad():
        head = tiny_model.decode_head(torch.from_numpy(golden["dlu_crop/neck_out"]), edge_maps)
    np.testing.assert_array_equal(head.box.as_tensor().numpy(), golden["dlu_crop/dlu_bbox"])
    assert_close(head.coarse_logits.numpy(), golden["dlu_crop/coarse_logits"], atol=1e-4)
    assert_close(head.logits.numpy(), golden["dlu_crop/logits"], atol=1e-3)
    left, top, right, bottom = (golden["dlu_crop/dlu_bbox"] * 16).tolist()
    outside = np.ones(head.logits.shape[-2:], dtype=bool)
    outside[top:bottom, left:right] = False
    assert (head.logits[0, 0].numpy()[outside] == -100.0).all()
