"""The artifact contract: what the graphs take and give, by name, shape and dtype, and its version.

Written by the export, read by the runtime (no torch needed). The version changes whenever an
artifact of the previous version can no longer be run as it is; the runtime refuses those.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from i2f_deploy.errors import I2FError

# 1: the five official per-image tensors; 2: plus the DLU's per-image edge terms (edge_conv_*)
CONTRACT_VERSION = 2
NUM_EDGE_MAPS = 4
EDGE_MAPS = tuple(f"edge_map_{i}" for i in range(NUM_EDGE_MAPS))
IMAGE_FEATURES = ("image_embeddings", *EDGE_MAPS)  # the official ones
EDGE_CONVS = tuple(f"edge_conv_{i}" for i in range(NUM_EDGE_MAPS))  # derived from the edge maps
ENCODER_OUTPUTS = (*IMAGE_FEATURES, *EDGE_CONVS)
DECODER_INPUTS = (*ENCODER_OUTPUTS, "ref_label")
DECODER_OUTPUTS = ("logits", "num_routed", "dpe_box", "dlu_box")


def _tensor(dtype: str, *shape: int) -> dict[str, object]:
    return {"dtype": dtype, "shape": list(shape)}


def io_contract(size: int, embed_dim: int, head_dim: int) -> dict[str, dict[str, dict[str, object]]]:
    """Graph inputs and outputs at target ``size``; ``head_dim`` is the DLU's input width."""
    grid = size // 16
    features: dict[str, dict[str, object]] = {"image_embeddings": _tensor("float32", 1, embed_dim, grid, grid)}
    for level in range(NUM_EDGE_MAPS):
        side = size // 2 ** (NUM_EDGE_MAPS - 1 - level)
        features[f"edge_map_{level}"] = _tensor("float32", 1, 256 // 4**level, side, side)
    for level in range(NUM_EDGE_MAPS):  # DLU stage ``level``'s conv of its edge map, as 2x2-block phases
        side = size // 2 ** (NUM_EDGE_MAPS - 1 - level)
        features[f"edge_conv_{level}"] = _tensor("float32", 1, 4 * (head_dim // 4 ** (level + 1)), side // 2, side // 2)
    return {
        "encoder": {"inputs": {"image": _tensor("float32", 1, 3, size, size)}, "outputs": features},
        "decoder": {
            "inputs": {**features, "ref_label": _tensor("uint8", 1, 1, size, size)},
            "outputs": {
                "logits": _tensor("float32", 1, 1, size, size),
                "num_routed": _tensor("int64"),
                "dpe_box": _tensor("int64", 4),
                "dlu_box": _tensor("int64", 4),
            },
        },
    }


def check_contract_version(manifest: dict, artifact_dir: str | Path) -> None:
    """Refuse artifacts written for another contract (version 1 manifests carry none)."""
    version = manifest.get("contract_version", 1)
    if version != CONTRACT_VERSION:
        raise I2FError(
            f"{artifact_dir} was exported for artifact contract {version}, this i2f-deploy runs contract "
            f"{CONTRACT_VERSION}: re-export it with 'i2f-deploy export ... --out {artifact_dir} --force'"
        )


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def part_files(manifest: dict, part: str) -> list[str]:
    """Every file ``part`` ("encoder" or "decoder") is loaded from, relative to the artifact."""
    entry = manifest["files"][part]
    return [entry["onnx"], *(entry[key] for key in ("external_data", "edge_conv") if key in entry)]


def verify_files(artifact_dir: str | Path, manifest: dict, names: list[str]) -> None:
    """Refuse a missing, truncated or altered file: sizes first (instant), then SHA-256."""
    for name in names:
        path = Path(artifact_dir) / name
        if not path.is_file():
            raise I2FError(f"{path} is missing: re-export the artifact or copy it again")
        expected_size = manifest["sizes"][name]
        size = path.stat().st_size
        if size != expected_size:
            raise I2FError(f"{path} is truncated or altered: {size} bytes, the manifest says {expected_size}")
        if sha256(path) != manifest["checksums"][name]:
            raise I2FError(f"{path} is altered: its SHA-256 differs from manifest.json's")
