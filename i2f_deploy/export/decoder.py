"""The per-click decoder graph: prompt map + cached image features -> logits.

The model's neck is reused with five parts swapped for custom-op shims (token routing, the DPE
convolution stack, BSQ attention, full attention, hybrid MoE): eagerly each shim runs the model's own code, under ONNX export each
becomes a single ``ai.inter2former`` node. Routing thus stays inside the graph and the number of
tokens on each path is data-dependent, as in the model.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable
from types import ModuleType
from typing import cast

import onnx
import torch
from torch import Tensor, nn

from i2f_deploy.contract import DECODER_INPUTS, DECODER_OUTPUTS, NUM_EDGE_MAPS
from i2f_deploy.custom_ops import bsq_attention, full_attention, hybrid_moe, prompt_convolution, token_routing
from i2f_deploy.custom_ops.registry import attach_functions
from i2f_deploy.export.dlu import EdgeTerms, FactoredDLU
from i2f_deploy.export.onnx_files import trace_to_onnx
from i2f_deploy.model.inter2former import Inter2Former
from i2f_deploy.model.neck import Inter2FormerNeck, NeckBlock
from i2f_deploy.model.routing import Box, Routing, box_from_tensor, crop, paste


class _RoutingShim(nn.Module):
    """Routing from one ``TokenRouting`` node: token order + split point + DPE box."""

    def __init__(self, stride: int, kernel_size: int) -> None:
        super().__init__()
        self.stride = stride
        self.kernel_size = kernel_size

    def forward(self, ref_label: Tensor) -> Routing:
        height, width = ref_label.shape[-2:]
        order, count, box = token_routing.torch_op(ref_label, self.stride, self.kernel_size)
        num_tokens = order.shape[0]
        num_routed = count.item()
        torch._check(num_routed >= 0)
        torch._check(num_routed <= num_tokens)
        routed = order.narrow(0, 0, num_routed)
        others = order.narrow(0, num_routed, num_tokens - num_routed)
        return Routing(routed, others, box, box_from_tensor(box, height, width), None)


class _OpShim(nn.Module):
    """A model part behind its custom op: ``op.torch_op(*inputs, part)``."""

    def __init__(self, op: ModuleType, part: nn.Module) -> None:
        super().__init__()
        self.op = op
        self.part = part

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.op.torch_op(*inputs, self.part)


def _embed_prompt_by_padding(neck: Inter2FormerNeck, ref_label: Tensor, box: Box) -> Tensor:
    """DPE as the graph computes it: the background vector plus the box's difference from it,
    zero-padded: one Pad and one Add where the model's mask, Pad and Where took 1.6 ms more a click."""
    background = neck.background_embedding.view(1, -1, 1, 1)
    local = neck.convolve_prompt(ref_label, box) - background
    return (paste(local, box.shrunk(neck.stride), neck.grid, neck.grid) + background)[0]


def _convolve_prompt_by_op(neck: Inter2FormerNeck, ref_label: Tensor, box: Box) -> Tensor:
    """DPE's convolution stack as one ``PromptConvolution`` node on the box's crop of the map."""
    return prompt_convolution.torch_op(crop(ref_label[0, 0], box), neck.ref_embeds.weight, neck.ref_conv)


class DecoderGraph(nn.Module):
    """Inputs and outputs named as in the artifact contract; extra outputs are diagnostics."""

    def __init__(self, model: Inter2Former) -> None:
        super().__init__()
        self.neck = copy.deepcopy(model.neck)
        self.head = FactoredDLU(copy.deepcopy(model.decode_head))
        self.neck.embed_prompt = functools.partial(_embed_prompt_by_padding, self.neck)  # type: ignore[method-assign]  # this copy only
        if prompt_convolution.fits(model.config.model.neck.ref_strides):
            self.neck.convolve_prompt = functools.partial(_convolve_prompt_by_op, self.neck)  # type: ignore[method-assign]
        if model.routing == "dynamic":
            self.neck.router = _RoutingShim(  # type: ignore[assignment]  # the router's stand-in: the same call, the custom op
                self.neck.stride, model.config.model.neck.uncertainty_kernel_size)
        for block in cast("Iterable[NeckBlock]", self.neck.blocks):
            # the custom ops' stand-ins: the same call, traced as one node each
            block.bsq_attn = _OpShim(bsq_attention, block.bsq_attn)  # type: ignore[assignment]
            block.loc_attn = _OpShim(full_attention, block.loc_attn)  # type: ignore[assignment]
            block.ffn = _OpShim(hybrid_moe, block.ffn)  # type: ignore[assignment]

    def forward(self, image_embeddings: Tensor, *edges_and_prompt: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Inputs in ``DECODER_INPUTS`` order: embeddings, edge maps, edge terms, prompt map."""
        edge_maps = list(edges_and_prompt[:NUM_EDGE_MAPS])
        edge_terms = list(edges_and_prompt[NUM_EDGE_MAPS : 2 * NUM_EDGE_MAPS])
        ref_label = edges_and_prompt[-1]
        neck = self.neck(image_embeddings, ref_label)
        logits, dlu_box = self.head(neck.features, edge_maps, edge_terms)
        num_routed = torch.ones_like(neck.routing.routed).sum()
        return logits, num_routed, neck.routing.box_values, dlu_box


def example_inputs(model: Inter2Former) -> tuple[Tensor, ...]:
    """A plausible decoder call (one positive click on an unknown map) to trace the graph with."""
    size = model.target_size
    grid = size // 16
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(1, model.config.model.neck.embed_dim, grid, grid, generator=generator)
    edge_maps = [
        torch.randn(1, 256 // 4**i, size // 2 ** (3 - i), size // 2 ** (3 - i), generator=generator) for i in range(4)
    ]
    with torch.no_grad():
        edge_terms = EdgeTerms(model.decode_head)(edge_maps)
    ref_label = torch.full((1, 1, size, size), 2, dtype=torch.uint8)
    ref_label[..., size // 2 - 5 : size // 2 + 6, size // 2 - 5 : size // 2 + 6] = 4
    return (embeddings, *edge_maps, *edge_terms, ref_label)


def export_decoder(model: Inter2Former, opset: int) -> onnx.ModelProto:
    """Trace the decoder to ONNX with its custom ops and their model-local functions."""
    proto = trace_to_onnx(DecoderGraph(model), example_inputs(model), DECODER_INPUTS, DECODER_OUTPUTS, opset)
    attach_functions(proto)
    return proto
