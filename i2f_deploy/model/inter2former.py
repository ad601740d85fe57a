"""The assembled Inter2Former: ``encode`` once per image, ``decode`` once per click.

Parts keep the official attribute names, so ``state_dict()`` has exactly the official keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from i2f_deploy.config import ExportConfig
from i2f_deploy.errors import InputError
from i2f_deploy.model.backbone import HRSAMBackbone
from i2f_deploy.model.checkpoint import load_weights, read_state_dict
from i2f_deploy.model.edges import CannyNet
from i2f_deploy.model.head import DynamicLocalUpsampling
from i2f_deploy.model.neck import Inter2FormerNeck
from i2f_deploy.model.routing import Box, Routing

NUM_EDGE_MAPS = 4


@dataclass
class DecodeResult:
    """Logits plus the discrete decisions and intermediates behind them (for validation)."""

    logits: Tensor  # [1,1,S,S]
    neck_out: Tensor  # [1,C,S/16,S/16]
    coarse_logits: Tensor  # [1,1,S/16,S/16]
    routing: Routing
    dlu_box: Box  # token grid

    @property
    def routed_tokens(self) -> Tensor:
        return self.routing.routed


class Inter2Former(nn.Module):
    """Inference-only model (eval mode, no gradients) at one fixed target size."""

    def __init__(self, config: ExportConfig, routing: str = "dynamic") -> None:
        """``routing="dense"``: every token on full attention, DPE and DLU on the whole image."""
        super().__init__()
        if routing not in ("dynamic", "dense"):
            raise ValueError(f"routing must be 'dynamic' or 'dense', got {routing!r}")
        dense = routing == "dense"
        self.config = config
        self.routing = routing
        self.target_size = config.target_size
        self.backbone = HRSAMBackbone(config.model.backbone, config.target_size)
        self.edge_detector = CannyNet(config.model.edge_detector)
        self.neck = Inter2FormerNeck(config.model.neck, config.target_size, dense)
        self.decode_head = DynamicLocalUpsampling(config.model.decode_head, dense)
        self.requires_grad_(False)
        self.eval()

    @torch.no_grad()
    def refresh_constants(self) -> None:
        """Recompute every per-weights constant; call after the weights change."""
        self.backbone.refresh_constants()
        self.neck.refresh_constants()

    @torch.no_grad()
    def encode(self, image: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Preprocessed image [1,3,S,S] -> (embeddings [1,256,S/16,S/16], 4 edge maps)."""
        expected = (1, 3, self.target_size, self.target_size)
        if tuple(image.shape) != expected or image.dtype != torch.float32:
            raise InputError(f"image must be float32 {list(expected)}, got {image.dtype} {list(image.shape)}")
        return self.backbone(image), self.edge_detector(image)

    @torch.no_grad()
    def decode_detailed(self, embeddings: Tensor, edge_maps: list[Tensor], ref_label: Tensor) -> DecodeResult:
        self._check_ref_label(ref_label)
        neck = self.neck(embeddings, ref_label)
        head = self.decode_head(neck.features, edge_maps)
        return DecodeResult(head.logits, neck.features, head.coarse_logits, neck.routing, head.box)

    def decode(self, embeddings: Tensor, edge_maps: list[Tensor], ref_label: Tensor) -> Tensor:
        """Prompt map [1,1,S,S] (values 0..4) -> logits [1,1,S,S]."""
        return self.decode_detailed(embeddings, edge_maps, ref_label).logits

    def _check_ref_label(self, ref_label: Tensor) -> None:
        expected = (1, 1, self.target_size, self.target_size)
        if tuple(ref_label.shape) != expected:
            raise InputError(f"ref_label must have shape {list(expected)}, got {list(ref_label.shape)}")
        if ref_label.is_floating_point() or ref_label.dtype == torch.bool:
            raise InputError(f"ref_label must hold integers 0..4, got {ref_label.dtype}")
        if ref_label.numel() and (int(ref_label.min()) < 0 or int(ref_label.max()) > 4):
            raise InputError("ref_label values must be within 0..4")


def random_model(config: ExportConfig, seed: int = 0, routing: str = "dynamic") -> Inter2Former:
    """The model of ``config`` with seeded random weights in the official layout."""
    from i2f_deploy.model.random_weights import randomize_weights

    model = Inter2Former(config, routing)
    randomize_weights(model, seed)
    return model


def build_model(
    config: ExportConfig, checkpoint: str | Path, allow_unsafe_pickle: bool = False, routing: str = "dynamic"
) -> Inter2Former:
    """The model of ``config`` with the weights of an official checkpoint file."""
    model = Inter2Former(config, routing)
    load_weights(model, read_state_dict(checkpoint, allow_unsafe_pickle))
    model.refresh_constants()
    return model
