"""The artifact contract: what the graphs take and give (names, shapes, dtypes), the manifest
that describes an artifact directory, and the contract's version.

Written by the export, read strictly by everything else (no torch needed). The version changes
whenever an artifact of the previous version can no longer be run as it is; those are refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, PositiveInt, ValidationError

from i2f_deploy.errors import I2FError

# 1: the five official per-image tensors; 2: plus the DLU's per-image edge terms (edge_conv_*)
CONTRACT_VERSION = 2
MANIFEST = "manifest.json"
PARTS = ("encoder", "decoder")
IMAGE = "image"
IMAGE_EMBEDDINGS = "image_embeddings"
NUM_EDGE_MAPS = 4
EDGE_MAPS = tuple(f"edge_map_{i}" for i in range(NUM_EDGE_MAPS))
IMAGE_FEATURES = (IMAGE_EMBEDDINGS, *EDGE_MAPS)  # the official ones
EDGE_CONVS = tuple(f"edge_conv_{i}" for i in range(NUM_EDGE_MAPS))  # derived from the edge maps
ENCODER_INPUTS = (IMAGE,)
ENCODER_OUTPUTS = (*IMAGE_FEATURES, *EDGE_CONVS)
REF_LABEL = "ref_label"
DECODER_INPUTS = (*ENCODER_OUTPUTS, REF_LABEL)
LOGITS, NUM_ROUTED, DPE_BOX, DLU_BOX = "logits", "num_routed", "dpe_box", "dlu_box"
DECODER_OUTPUTS = (LOGITS, NUM_ROUTED, DPE_BOX, DLU_BOX)


def _tensor(dtype: str, *shape: int) -> dict[str, object]:
    return {"dtype": dtype, "shape": list(shape)}


def io_contract(size: int, embed_dim: int, head_dim: int) -> dict[str, dict[str, dict[str, dict[str, object]]]]:
    """Graph inputs and outputs at target ``size``; ``head_dim`` is the DLU's input width."""
    grid = size // 16
    features: dict[str, dict[str, object]] = {IMAGE_EMBEDDINGS: _tensor("float32", 1, embed_dim, grid, grid)}
    for level, name in enumerate(EDGE_MAPS):
        side = size // 2 ** (NUM_EDGE_MAPS - 1 - level)
        features[name] = _tensor("float32", 1, 256 // 4**level, side, side)
    for level, name in enumerate(EDGE_CONVS):  # DLU stage ``level``'s conv of its edge map, as 2x2-block phases
        side = size // 2 ** (NUM_EDGE_MAPS - 1 - level)
        features[name] = _tensor("float32", 1, 4 * (head_dim // 4 ** (level + 1)), side // 2, side // 2)
    return {
        "encoder": {"inputs": {IMAGE: _tensor("float32", 1, 3, size, size)}, "outputs": features},
        "decoder": {
            "inputs": {**features, REF_LABEL: _tensor("uint8", 1, 1, size, size)},
            "outputs": {
                LOGITS: _tensor("float32", 1, 1, size, size),
                NUM_ROUTED: _tensor("int64"),
                DPE_BOX: _tensor("int64", 4),
                DLU_BOX: _tensor("int64", 4),
            },
        },
    }


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class TensorSpec(_Strict):
    dtype: str
    shape: list[int]


class GraphIO(_Strict):
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]


class PartFiles(_Strict):
    """A part's files, relative to the artifact directory."""

    onnx: str
    external_data: str | None = None  # the encoder's weights beyond protobuf's 2 GB
    onnx_inlined: str | None = None  # the decoder with its custom ops' functions inlined
    edge_conv: str | None = None  # edge maps -> edge_conv_* for callers holding the five official features
    openvino: str | None = None  # OpenVINO IR; the runtime loads it only for an int8 part (NNCF's)
    segments: list[str] | None = None  # the decoder cut at its custom ops (SegmentPlan first): ONNX Runtime's native path

    def loaded(self, openvino_ir: bool = False) -> list[str]:
        """The files a runtime loads this part from (with ``openvino_ir``, the IR and its weights too)."""
        names = [name for name in (self.onnx, self.external_data, self.edge_conv, *(self.segments or ())) if name is not None]
        if openvino_ir and self.openvino is not None:
            names += [self.openvino, str(Path(self.openvino).with_suffix(".bin"))]
        return names


class SegmentStep(_Strict):
    """One step of the segmented decoder: a graph segment (``graph``, an ONNX file beside the plan)
    or a custom op run by its native kernel (``op``, with the node's ``attributes``)."""

    graph: str | None = None
    op: str | None = None
    attributes: dict[str, int | float] = {}
    inputs: list[str]
    outputs: list[str]


class SegmentPlan(_Strict):
    """The decoder cut at its custom-op nodes (``PartFiles.segments``, this file first): a runtime
    without custom-op support runs the segments and calls the ops' native kernels between them.
    ``decoder.onnx`` stays whole for every other runtime; both compute the same outputs."""

    inputs: dict[str, TensorSpec]  # the decoder's
    outputs: list[str]
    constants: str  # an .npz beside the plan: the initializers the ops read (their weights)
    steps: list[SegmentStep]

    @classmethod
    def read(cls, path: Path) -> SegmentPlan:
        try:
            return cls.model_validate_json(path.read_text())
        except (OSError, ValidationError) as exc:
            raise I2FError(f"{path} is not a readable segment plan ({str(exc).splitlines()[0]}); re-export the artifact") from None


class Files(_Strict):
    encoder: PartFiles
    decoder: PartFiles


Precision = Literal["f32", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = ("f32", "bf16", "int8")


class PartPrecision(_Strict):
    """What one part computes in on each backend."""

    onnxruntime: Precision = "f32"
    openvino: Precision = "f32"

    def on(self, backend: str) -> str:
        return getattr(self, backend)


class ExportPrecision(_Strict):
    """``export --precision``: reduced precision is chosen at export, never a silent default.
    Manifests written before the field existed read as f32, which is what they computed."""

    choice: Precision = "f32"
    encoder: PartPrecision = PartPrecision()
    decoder: PartPrecision = PartPrecision()
    calibration: list[str] = []  # int8: the images the activation ranges were measured on
    quantized: dict[str, str] = {}  # int8: per backend, what was quantized and by which tool

    def part(self, part: str) -> PartPrecision:
        return getattr(self, part)


class Weights(_Strict):
    source: Literal["checkpoint", "random"]
    seed: int | None = None  # random weights
    file: str | None = None  # checkpoint: its file name and digest
    sha256: str | None = None


class CustomOps(_Strict):
    domain: str
    version: int
    op_types: list[str]


class Manifest(_Strict):
    """``manifest.json``: what an artifact directory holds and how it was made. Written by the
    export; read strictly (a missing, unknown or mistyped field is refused)."""

    contract_version: int
    config: dict[str, Any]  # i2f_deploy.config.ExportConfig as data
    target_size: PositiveInt
    routing: Literal["dynamic", "dense"]
    edge_numerics: Literal["official", "portable"]
    weights: Weights
    preprocessing: dict[str, Any]
    opset: int
    custom_ops: CustomOps
    io: dict[str, GraphIO]  # by part
    files: Files
    checksums: dict[str, str]  # every file of the directory
    sizes: dict[str, int]
    backends: dict[str, str]
    tools: dict[str, str]
    notes: list[str]
    precision: ExportPrecision = ExportPrecision()

    @classmethod
    def read(cls, artifact_dir: str | Path) -> Manifest:
        """The manifest of an artifact directory of this contract version (others are refused)."""
        path = Path(artifact_dir) / MANIFEST
        if not path.is_file():
            raise I2FError(f"not an i2f-deploy artifact directory (no {MANIFEST}): {artifact_dir}")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise I2FError(f"{MANIFEST} in {artifact_dir} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise I2FError(f"{MANIFEST} in {artifact_dir} is not a JSON object")
        version = data.get("contract_version", 1)  # version 1 manifests carry none
        if version != CONTRACT_VERSION:
            raise I2FError(
                f"{artifact_dir} was exported for artifact contract {version}, this i2f-deploy runs contract "
                f"{CONTRACT_VERSION}: re-export it with 'i2f-deploy export ... --out {artifact_dir} --force'"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise I2FError(f"{MANIFEST} in {artifact_dir} is not valid: {where}: {first['msg']} "
                           f"({exc.error_count()} problem(s)); re-export the artifact") from None

    def write(self, artifact_dir: Path) -> Path:
        path = artifact_dir / MANIFEST
        path.write_text(self.model_dump_json(indent=2, exclude_none=True) + "\n")
        return path

    def part(self, part: str) -> PartFiles:
        if part not in PARTS:
            raise I2FError(f"unknown part {part!r}; choose from {', '.join(PARTS)}")
        return getattr(self.files, part)

    def verify(self, artifact_dir: str | Path, parts: tuple[str, ...] = PARTS) -> None:
        """Refuse a missing, truncated or altered file of ``parts``: sizes first (instant), then
        SHA-256."""
        int8_ir = {part: self.precision.part(part).openvino == "int8" for part in parts}
        for name in [name for part in parts for name in self.part(part).loaded(int8_ir[part])]:
            path = Path(artifact_dir) / name
            if not path.is_file():
                raise I2FError(f"{path} is missing: re-export the artifact or copy it again")
            if name not in self.sizes or name not in self.checksums:
                raise I2FError(f"{path} is not listed in {MANIFEST}'s sizes and checksums; re-export the artifact")
            size = path.stat().st_size
            if size != self.sizes[name]:
                raise I2FError(f"{path} is truncated or altered: {size} bytes, the manifest says {self.sizes[name]}")
            if sha256(path) != self.checksums[name]:
                raise I2FError(f"{path} is altered: its SHA-256 differs from {MANIFEST}'s")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
