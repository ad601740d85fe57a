"""Work per click in GFLOP, counted from the routing and boxes the decoder actually used.

Multiply-adds count as 2 FLOP; normalisations, activations, softmax and data movement are left
out (they are a few percent of the total). The counts follow the model code: DPE convolves the
prompt map inside the DPE box only; every token gets LN, QKV and output projections and the
shared expert; routed tokens attend to all N keys and get a routed expert; the others attend to
the 256 BSQ code keys; DLU runs its four upsampling stages inside the DLU box only, directly
(eager PyTorch: bicubic x2, then a 3x3 convolution at the high resolution) or factored (the
graphs: a 1x1 mixing into 9 tap maps and two 5-tap polyphase filters at the low resolution, the
edge maps' convolutions being per image; ``i2f_deploy/export/dlu.py``).
"""

from __future__ import annotations

from itertools import pairwise

from i2f_deploy.config import ExportConfig


def _conv(c_in: int, c_out: int, kernel: int, pixels: float) -> float:
    return 2.0 * c_in * c_out * kernel * kernel * pixels


def dpe_flop(config: ExportConfig, box_height: int, box_width: int) -> float:
    neck = config.model.neck
    channels = (5, *neck.ref_dims)
    flop, height, width = 0.0, box_height, box_width
    for c_in, c_out, stride in zip(channels[:-1], channels[1:], neck.ref_strides):
        height, width = height // stride, width // stride
        flop += _conv(c_in, c_out, 2 * stride - 1, height * width)
    return flop


def neck_flop(config: ExportConfig, num_routed: int) -> float:
    neck = config.model.neck
    stride = 1
    for s in neck.ref_strides:
        stride *= s
    tokens = (config.target_size // stride) ** 2
    others = tokens - num_routed
    dim, attn = neck.embed_dim, neck.embed_dim // neck.downscale
    expert_hidden = int(neck.mlp_ratio * dim) // neck.downscale
    codes = 2**neck.code_size
    per_block = (
        2.0 * tokens * dim * 3 * attn  # qkv
        + 2.0 * tokens * attn * dim  # o_proj
        + 2.0 * tokens * attn * neck.code_size  # key codes
        + 4.0 * num_routed * tokens * attn  # full attention: scores and weighted values
        + 4.0 * others * codes * attn  # BSQ attention over the code keys
        + 2.0 * tokens * 3 * dim * expert_hidden  # shared SwiGLU expert
        + 2.0 * num_routed * (3 * dim * expert_hidden + dim * (1 + neck.downscale))  # routed expert + gates
    )
    return neck.depth * per_block


def dlu_flop(config: ExportConfig, box_height: int, box_width: int, factored: bool = False) -> float:
    """``box_*`` in tokens (stride 16)."""
    head = config.model.decode_head
    grid = config.target_size // 2**head.num_upsamplers
    widths = [head.embed_dim // 4**i for i in range(head.num_upsamplers + 1)]
    flop = sum(2.0 * grid * grid * c_in * c_out for c_in, c_out in pairwise(widths))  # locator MLP
    pixels = box_height * box_width  # at the stage's input resolution
    for c_in, c_out in pairwise(widths):
        if factored:
            flop += 2.0 * pixels * c_in * 9 * c_out  # 1x1 mixing into one map per tap
            flop += 2.0 * pixels * 6 * c_out * 3 * 5  # row filter: (ky, phase_x) from 3 kx maps, 5 taps
            flop += 2.0 * pixels * 4 * c_out * 3 * 5  # column filter: 4 phases from 3 ky maps, 5 taps
        else:
            flop += 2.0 * 4 * pixels * c_in * 16  # bicubic x2: 4x4 taps per output pixel
            flop += _conv(c_in, c_out, 3, 4 * pixels)
        pixels *= 4
    return flop


def decoder_work(config: ExportConfig, num_routed: int, dpe_box: list[int], dlu_box: list[int],
                 factored: bool = False) -> dict[str, float]:
    """GFLOP of one decoder call per part; boxes are (left, top, right, bottom), DPE in pixels,
    DLU in tokens; ``factored`` counts the DLU as the exported graphs compute it."""
    return {
        "dpe": dpe_flop(config, dpe_box[3] - dpe_box[1], dpe_box[2] - dpe_box[0]) / 1e9,
        "neck": neck_flop(config, num_routed) / 1e9,
        "dlu": dlu_flop(config, dlu_box[3] - dlu_box[1], dlu_box[2] - dlu_box[0], factored) / 1e9,
    }


def decoder_gflop(config: ExportConfig, num_routed: int, dpe_box: list[int], dlu_box: list[int],
                  factored: bool = False) -> float:
    """GFLOP of one decoder call (see :func:`decoder_work`)."""
    return sum(decoder_work(config, num_routed, dpe_box, dlu_box, factored).values())


def encoder_work(model, image) -> dict[str, float]:
    """GFLOP of one encoding, counted by PyTorch's FLOP counter on the eager model (matrix
    products and convolutions; the same rule as above): ``backbone`` and ``edges`` (the edge
    detector), plus ``edge_terms``, the DLU's per-image convolutions that only the graphs compute
    in the encoder (``i2f_deploy/export/dlu.py``)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from i2f_deploy.export.dlu import EdgeTerms

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        _, edge_maps = model.encode(image)
    per_module = {name: sum(counts.values()) for name, counts in counter.get_flop_counts().items()}
    with torch.no_grad(), FlopCounterMode(display=False) as terms:
        EdgeTerms(model.decode_head)(edge_maps)
    return {"backbone": per_module.get("HRSAMBackbone", 0) / 1e9, "edges": per_module.get("CannyNet", 0) / 1e9,
            "edge_terms": terms.get_total_flops() / 1e9}
