"""Export configurations: model hyper-parameters and target size, stored as TOML data.

A named configuration lives in ``export_configs/<name>.toml``; a path to any TOML file with the
same tables works too. Every field is required, unless the file names a shipped configuration
with ``base = "<name>"``: its fields then start from that one's. Unknown fields, wrong types and
values the model cannot be built with are errors naming the field, so a typo or an omission
never falls back to a default silently.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from i2f_deploy.errors import ConfigError

PATCH_SIZE = 16  # the artifact contract's token grid is target_size / 16
NUM_STAGES = 4  # edge maps = DLU stages, each doubling the resolution: 2**4 = PATCH_SIZE
TARGET_MULTIPLE = 256


def _at_least(low: float) -> Any:
    """A number (or each number of a list) that must be >= ``low``."""
    return field(metadata={"min": low})


def _above(low: float) -> Any:
    """A number that must be > ``low``."""
    return field(metadata={"above": low})


@dataclass(frozen=True)
class BackboneConfig:
    """HRSAM ViT backbone (official ``HRSAMViTNoSSM``)."""

    depth: int = _at_least(1)
    embed_dim: int = _at_least(1)
    num_heads: int = _at_least(1)
    mlp_ratio: float = _above(0)
    patch_size: int = _at_least(1)
    img_size: int = _at_least(1)
    window_size: int = _at_least(1)
    downsample_sizes: tuple[int, ...] = _at_least(1)
    out_indices: tuple[int, ...] = _at_least(0)
    final_embed_dim: int = _at_least(1)
    rope_ratio: float = _above(0)


@dataclass(frozen=True)
class EdgeDetectorConfig:
    """CannyNet edge detector."""

    depth: int = _at_least(1)
    strides: tuple[int, ...] = _at_least(1)
    downscale: int = _at_least(2)
    threshold: float = _at_least(0)


@dataclass(frozen=True)
class NeckConfig:
    """DPE + DHA + HMoE neck (official ``Inter2FormerDecoderNeck``)."""

    downscale: int = _at_least(1)
    depth: int = _at_least(1)
    embed_dim: int = _at_least(1)
    num_heads: int = _at_least(1)
    ref_dims: tuple[int, ...] = _at_least(1)
    ref_strides: tuple[int, ...] = _at_least(1)
    code_size: int = _at_least(1)
    mlp_ratio: float = _above(0)
    uncertainty_kernel_size: int = _at_least(1)
    rope_ratio: float = _above(0)
    rope_theta: float = _above(0)


@dataclass(frozen=True)
class DecodeHeadConfig:
    """Dynamic local upsampling head."""

    embed_dim: int = _at_least(1)
    num_upsamplers: int = _at_least(1)
    threshold: float = field(metadata={})


@dataclass(frozen=True)
class ModelConfig:
    backbone: BackboneConfig
    edge_detector: EdgeDetectorConfig
    neck: NeckConfig
    decode_head: DecodeHeadConfig


MODEL_PARTS: dict[str, type] = typing.get_type_hints(ModelConfig)


@dataclass(frozen=True)
class ExportConfig:
    """One named deployment target: the model and the square size it runs at."""

    name: str
    target_size: int
    model: ModelConfig

    def __post_init__(self) -> None:
        problems = list(_model_problems(self))
        if problems:
            raise ConfigError(f"config {self.name}: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _model_problems(config: ExportConfig) -> Iterator[str]:
    """What the model and the artifact contract need beyond each field's own range."""
    b, e, n, h = config.model.backbone, config.model.edge_detector, config.model.neck, config.model.decode_head
    size = config.target_size
    if size <= 0 or size % TARGET_MULTIPLE:
        yield f"target_size must be a positive multiple of {TARGET_MULTIPLE}, got {size}"
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
    if b.rope_ratio > 1 or n.rope_ratio > 1:
        yield "rope_ratio must lie in (0, 1]"
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
    if n.code_size > 16:
        yield f"model.neck.code_size {n.code_size} must be at most 16 (2**code_size BSQ codes)"
    if len(n.ref_dims) != len(n.ref_strides) or n.ref_dims[-1] != n.embed_dim:
        yield (f"model.neck.ref_dims {list(n.ref_dims)} must have one entry per ref_stride "
               f"{list(n.ref_strides)} and end at embed_dim {n.embed_dim}")
    if math.prod(n.ref_strides) != b.patch_size:
        yield f"model.neck.ref_strides {list(n.ref_strides)} must multiply to patch_size {b.patch_size}"
    if n.uncertainty_kernel_size % 2 == 0:
        yield f"model.neck.uncertainty_kernel_size must be odd, got {n.uncertainty_kernel_size}"


def _number(value: Any, kind: type, where: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise ConfigError(f"{where} must be {'a number' if kind is float else 'an integer'}, got {value!r}")
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"{where} must be finite, got {value!r}")
    return kind(value)


def _check_range(value: float, metadata: Any, where: str) -> None:
    if "min" in metadata and value < metadata["min"]:
        raise ConfigError(f"{where} must be at least {metadata['min']}, got {value!r}")
    if "above" in metadata and value <= metadata["above"]:
        raise ConfigError(f"{where} must be greater than {metadata['above']}, got {value!r}")


def _field_value(value: Any, kind: Any, metadata: Any, where: str) -> Any:
    if typing.get_origin(kind) is tuple:
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"{where} must be a non-empty list of integers, got {value!r}")
        items = tuple(_number(item, int, where) for item in value)
        for item in items:
            _check_range(item, metadata, where)
        return items
    number = _number(value, kind, where)
    _check_range(number, metadata, where)
    return number


def _build(cls: type, table: Any, where: str) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"[{where}] must be a table, got {table!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(f"unknown field(s) in [{where}]: {', '.join(unknown)}")
    missing = [name for name in fields if name not in table]
    if missing:
        raise ConfigError(f"[{where}] is missing: {', '.join(missing)} (give them, or start from a shipped config with base = \"<name>\")")
    return cls(**{
        name: _field_value(table[name], hints[name], fields[name].metadata, f"{where}.{name}") for name in fields
    })


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        merged[key] = _merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def config_from_dict(data: dict[str, Any]) -> ExportConfig:
    """Build a validated :class:`ExportConfig` from parsed TOML/JSON data (see the module doc)."""
    data = dict(data)
    if "base" in data:
        base_name = data.pop("base")
        if not isinstance(base_name, str) or base_name not in available_configs():
            raise ConfigError(f"base = {base_name!r} is not a shipped config; choose from {', '.join(available_configs())}")
        base = load_config(base_name).to_dict()
        base.pop("name")
        data = _merged(base, data)
    model_table = data.pop("model", {})
    if not isinstance(model_table, dict):
        raise ConfigError(f"[model] must be a table, got {model_table!r}")
    unknown = sorted(set(model_table) - set(MODEL_PARTS))
    if unknown:
        raise ConfigError(f"unknown table(s) in [model]: {', '.join(unknown)}")
    missing = [key for key in ("name", "target_size") if key not in data]
    missing += [f"[model.{part}]" for part in MODEL_PARTS if part not in model_table]
    if missing:
        raise ConfigError(f"config is missing: {', '.join(missing)}")
    name, target_size = data.pop("name"), data.pop("target_size")
    if data:
        raise ConfigError(f"unknown top-level field(s): {', '.join(sorted(data))}")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"name must be a non-empty string, got {name!r}")
    model = ModelConfig(**{
        part: _build(MODEL_PARTS[part], model_table[part], f"model.{part}") for part in MODEL_PARTS
    })
    return ExportConfig(name=name, target_size=int(_number(target_size, int, "target_size")), model=model)


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
    return config_from_dict(data)
