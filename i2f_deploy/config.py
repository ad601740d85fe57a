"""Export configurations: model hyper-parameters and target size, stored as TOML data.

A named configuration lives in ``export_configs/<name>.toml``; a path to any TOML file with the
same tables works too. Every field is required, unless the file names a shipped configuration
with ``base = "<name>"``: its fields then start from that one's. Unknown fields, wrong types and
values the model cannot be built with are errors naming the field, so a typo or an omission
never falls back to a default silently.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

from i2f_deploy.errors import ConfigError
from i2f_deploy.validation import field_path, problem

PATCH_SIZE = 16  # the artifact contract's token grid is target_size / 16
NUM_STAGES = 4  # edge maps = DLU stages, each doubling the resolution: 2**4 = PATCH_SIZE
TARGET_MULTIPLE = 256

# Integers must be integers and numbers numbers (a TOML 4.0 is not a depth, true is not 1).
Count = Annotated[StrictInt, Field(ge=1)]
Index = Annotated[StrictInt, Field(ge=0)]
Positive = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
Ratio = Annotated[float, Field(strict=True, gt=0, le=1, allow_inf_nan=False)]
Counts = Annotated[tuple[Count, ...], Field(min_length=1)]
Indices = Annotated[tuple[Index, ...], Field(min_length=1)]


class _Table(BaseModel):
    """One TOML table: every field given, none unknown, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class BackboneConfig(_Table):
    """HRSAM ViT backbone (official ``HRSAMViTNoSSM``)."""

    depth: Count
    embed_dim: Count
    num_heads: Count
    mlp_ratio: Positive
    patch_size: Count
    img_size: Count
    window_size: Count
    downsample_sizes: Counts
    out_indices: Indices
    final_embed_dim: Count
    rope_ratio: Ratio


class EdgeDetectorConfig(_Table):
    """CannyNet edge detector."""

    depth: Count
    strides: Counts
    downscale: Annotated[StrictInt, Field(ge=2)]
    threshold: Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]


class NeckConfig(_Table):
    """DPE + DHA + HMoE neck (official ``Inter2FormerDecoderNeck``)."""

    downscale: Count
    depth: Count
    embed_dim: Count
    num_heads: Count
    ref_dims: Counts
    ref_strides: Counts
    code_size: Annotated[StrictInt, Field(ge=1, le=16)]  # 2**code_size BSQ codes
    mlp_ratio: Positive
    uncertainty_kernel_size: Count
    rope_ratio: Ratio
    rope_theta: Positive


class DecodeHeadConfig(_Table):
    """Dynamic local upsampling head."""

    embed_dim: Count
    num_upsamplers: Count
    threshold: Annotated[float, Field(strict=True, allow_inf_nan=False)]


class ModelConfig(_Table):
    backbone: BackboneConfig
    edge_detector: EdgeDetectorConfig
    neck: NeckConfig
    decode_head: DecodeHeadConfig


class ExportConfig(_Table):
    """One named deployment target: the model and the square size it runs at."""

    name: Annotated[str, Field(strict=True, min_length=1)]
    target_size: Annotated[StrictInt, Field(gt=0, multiple_of=TARGET_MULTIPLE)]
    model: ModelConfig

    @model_validator(mode="after")
    def _fits_the_model(self) -> ExportConfig:
        problems = list(_model_problems(self))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


def _model_problems(config: ExportConfig) -> Iterator[str]:
    """What the model and the artifact contract need beyond each field's own range."""
    b, e, n, h = config.model.backbone, config.model.edge_detector, config.model.neck, config.model.decode_head
    if b.patch_size != PATCH_SIZE:
        yield f"model.backbone.patch_size must be {PATCH_SIZE} (the artifact's token grid), got {b.patch_size}"
    if b.img_size % b.patch_size:
        yield f"model.backbone.img_size {b.img_size} must be a multiple of patch_size {b.patch_size}"
    if any(s % b.patch_size for s in b.downsample_sizes):
        yield f"model.backbone.downsample_sizes {list(b.downsample_sizes)} must be multiples of patch_size {b.patch_size}"
    if b.embed_dim % b.num_heads or (b.embed_dim // b.num_heads) % 4:
        yield (f"model.backbone.embed_dim {b.embed_dim} must be divisible by num_heads {b.num_heads} "
               "into heads whose width is a multiple of 4 (rotary embedding)")
    if not b.out_indices or list(b.out_indices) != sorted(set(b.out_indices)) or b.out_indices[-1] >= b.depth:
        yield f"model.backbone.out_indices {list(b.out_indices)} must be increasing block indices below depth {b.depth}"
    if not b.final_embed_dim == n.embed_dim == h.embed_dim:
        yield (f"model.backbone.final_embed_dim {b.final_embed_dim}, model.neck.embed_dim {n.embed_dim} and "
               f"model.decode_head.embed_dim {h.embed_dim} must be equal (one feature width flows through)")
    if h.num_upsamplers != NUM_STAGES or h.embed_dim != 4**NUM_STAGES:
        yield (f"model.decode_head must have num_upsamplers = {NUM_STAGES} and embed_dim = {4**NUM_STAGES} "
               "(each stage doubles the resolution and divides the width by 4, down to one logit)")
    if len(e.strides) != NUM_STAGES or any(s != 2 for s in e.strides) or e.downscale != 4:
        yield (f"model.edge_detector needs strides = {[2] * NUM_STAGES} and downscale = 4 "
               "(one edge map per DLU stage, at its resolution and width)")
    if n.num_heads != n.downscale:
        yield f"model.neck.num_heads ({n.num_heads}) must equal its downscale ({n.downscale}): the neck has one attention head"
    attention_width = n.embed_dim // n.downscale
    if n.embed_dim % n.downscale or attention_width % 4:
        yield f"model.neck.embed_dim {n.embed_dim} / downscale {n.downscale} must be a whole multiple of 4"
    if int(n.mlp_ratio * n.embed_dim) % n.downscale:
        yield f"model.neck.mlp_ratio x embed_dim must split into downscale = {n.downscale} experts"
    if len(n.ref_dims) != len(n.ref_strides) or n.ref_dims[-1] != n.embed_dim:
        yield (f"model.neck.ref_dims {list(n.ref_dims)} must have one entry per ref_stride "
               f"{list(n.ref_strides)} and end at embed_dim {n.embed_dim}")
    if math.prod(n.ref_strides) != b.patch_size:
        yield f"model.neck.ref_strides {list(n.ref_strides)} must multiply to patch_size {b.patch_size}"
    if n.uncertainty_kernel_size % 2 == 0:
        yield f"model.neck.uncertainty_kernel_size must be odd, got {n.uncertainty_kernel_size}"


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        merged[key] = _merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def _table(loc: tuple[int | str, ...]) -> str:
    return "[" + ".".join(str(part) for part in loc) + "]"


def _problems(exc: ValidationError) -> list[str]:
    """Every error, missing and unknown fields grouped by their table."""
    missing: dict[tuple[int | str, ...], list[str]] = {}
    unknown: dict[tuple[int | str, ...], list[str]] = {}
    others = []
    seen = set()
    for error in exc.errors():
        if field_path(error) in seen:  # one problem per field: a list's bad item, not also its length
            continue
        seen.add(field_path(error))
        if error["type"] == "missing":
            missing.setdefault(error["loc"][:-1], []).append(str(error["loc"][-1]))
        elif error["type"] == "extra_forbidden":
            unknown.setdefault(error["loc"][:-1], []).append(str(error["loc"][-1]))
        elif error["type"] in ("model_type", "model_attributes_type"):
            others.append(problem(error, _table(field_path(error))))
        else:
            others.append(problem(error, ".".join(str(part) for part in field_path(error))))
    problems = [f"unknown field(s) in {_table(table)}: {', '.join(sorted(names))}" if table else
                f"unknown top-level field(s): {', '.join(sorted(names))}" for table, names in unknown.items()]
    problems += [f"{_table(table) if table else 'the top level'} is missing: {', '.join(names)} "
                 "(give them, or start from a shipped config with base = \"<name>\")" for table, names in missing.items()]
    return problems + others


def config_from_dict(data: dict[str, Any], source: str = "config") -> ExportConfig:
    """Build a validated :class:`ExportConfig` from parsed TOML/JSON data (see the module doc);
    ``source`` names the file in the error."""
    data = dict(data)
    if "base" in data:
        base_name = data.pop("base")
        if not isinstance(base_name, str) or base_name not in available_configs():
            raise ConfigError(f"{source}: base = {base_name!r} is not a shipped config; "
                              f"choose from {', '.join(available_configs())}")
        base = load_config(base_name).to_dict()
        base.pop("name")
        data = _merged(base, data)
    try:
        return ExportConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: " + "; ".join(_problems(exc))) from None


def available_configs() -> list[str]:
    """Names of the configurations shipped in ``export_configs/``."""
    folder = resources.files("i2f_deploy.export_configs")
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_config(name_or_path: str | Path) -> ExportConfig:
    """Load a shipped configuration by name, or any TOML file by path."""
    text = str(name_or_path)
    if text.endswith(".toml") or Path(text).exists():
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        raw = path.read_bytes()
    else:
        entry = resources.files("i2f_deploy.export_configs") / f"{text}.toml"
        if not entry.is_file():
            raise ConfigError(f"unknown config {text!r}; available: {', '.join(available_configs())}")
        raw = entry.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {text} is not valid TOML: {exc}") from None
    return config_from_dict(data, f"config {text}")
