"""``manifest.json``: what an artifact directory holds and what each backend needs to load it."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from i2f_deploy import __version__
from i2f_deploy.config import ExportConfig
from i2f_deploy.contract import CONTRACT_VERSION, Manifest, io_contract, sha256
from i2f_deploy.custom_ops import DOMAIN, VERSION
from i2f_deploy.custom_ops.registry import OP_TYPES
from i2f_deploy.export.encoder import NUMERICS as ENCODER_NUMERICS
from i2f_deploy.preprocess import MEAN_BGR, SIZE_DIVISOR, STD_BGR

TOOLS = ("torch", "onnx", "onnxruntime", "onnxscript", "onnxsim", "openvino", "nncf", "numpy")


def tool_versions() -> dict[str, str]:
    versions = {"i2f-deploy": __version__}
    for name in TOOLS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def write_manifest(
    out_dir: Path,
    config: ExportConfig,
    *,
    routing: str,
    opset: int,
    weights: dict[str, object],
    files: dict[str, dict[str, object]],
    notes: list[str],
    precision: dict[str, object],
) -> Path:
    all_files = sorted(p for p in out_dir.rglob("*") if p.is_file())
    manifest = Manifest.model_validate({
        "contract_version": CONTRACT_VERSION,
        "config": config.to_dict(),
        "target_size": config.target_size,
        "routing": routing,
        "edge_numerics": ENCODER_NUMERICS,
        "weights": weights,
        "preprocessing": {
            "channel_order": "BGR",
            "mean": MEAN_BGR.astype(float).round(4).tolist(),
            "std": STD_BGR.astype(float).round(4).tolist(),
            "pad_to_multiple": SIZE_DIVISOR,
            "pad_value": 0.0,
            "pad_to_square": True,
            "resize": "bilinear, align_corners=False, no antialias",
            "click_scale": "int(target_size / padded_side * coordinate)",
        },
        "opset": opset,
        "custom_ops": {"domain": DOMAIN, "version": VERSION, "op_types": list(OP_TYPES)},
        "io": io_contract(config.target_size, config.model.neck.embed_dim, config.model.decode_head.embed_dim),
        "files": files,
        "checksums": {str(p.relative_to(out_dir)): sha256(p) for p in all_files},
        "sizes": {str(p.relative_to(out_dir)): p.stat().st_size for p in all_files},
        "backends": {
            "onnxruntime": ("stock onnxruntime: the custom ops carry ONNX functions that it inlines; or the segments of "
                            "decoder_segments/plan.json with the ops' native kernels between them (i2f_deploy.runtime.ort_segments)"),
            "openvino": (
                "read decoder.onnx after registering the custom ops (i2f_deploy.custom_ops.openvino.register; "
                "native=True runs the ops on the extension library built at install), "
                "or read decoder_inlined.onnx or openvino/*.xml as they are; compile with "
                "INFERENCE_PRECISION_HINT=f32 for parity"
            ),
        },
        "tools": tool_versions(),
        "notes": notes,
        "precision": precision,
    })
    return manifest.write(out_dir)
