"""Export configurations: model hyper-parameters and target size, stored as TOML data.

A named configuration lives in ``export_configs/<name>.toml``; a path to any TOML file with the
same tables works too. Unknown or missing fields are errors, so a typo never falls back to a
default silently.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from i2f_deploy.errors import ConfigError


@dataclass(frozen=True)
class BackboneConfig:
    """HRSAM ViT backbone (official ``HRSAMViTNoSSM``)."""

    depth: int = 12
    embed_dim: int = 768
    num_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    img_size: int = 224
    window_size: int = 16
    downsample_sizes: tuple[int, ...] = (256,)
    out_indices: tuple[int, ...] = (2, 5, 8, 11)
    final_embed_dim: int = 256
    rope_ratio: float = 0.5


@dataclass(frozen=True)
class EdgeDetectorConfig:
    """CannyNet edge detector."""

    depth: int = 4
    strides: tuple[int, ...] = (2, 2, 2, 2)
    downscale: int = 4
    threshold: float = 2.0


@dataclass(frozen=True)
class NeckConfig:
    """DPE + DHA + HMoE neck (official ``Inter2FormerDecoderNeck``)."""

    downscale: int = 8
    depth: int = 2
    embed_dim: int = 256
    num_heads: int = 8
    ref_dims: tuple[int, ...] = (32, 64, 128, 256)
    ref_strides: tuple[int, ...] = (2, 2, 2, 2)
    code_size: int = 8
    mlp_ratio: float = 2.0
    uncertainty_kernel_size: int = 7
    rope_ratio: float = 0.5
    rope_theta: float = 10000.0


@dataclass(frozen=True)
class DecodeHeadConfig:
    """Dynamic local upsampling head."""

    embed_dim: int = 256
    num_upsamplers: int = 4
    threshold: float = -2.0


@dataclass(frozen=True)
class ModelConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    edge_detector: EdgeDetectorConfig = field(default_factory=EdgeDetectorConfig)
    neck: NeckConfig = field(default_factory=NeckConfig)
    decode_head: DecodeHeadConfig = field(default_factory=DecodeHeadConfig)


@dataclass(frozen=True)
class ExportConfig:
    """One named deployment target: the model and the square size it runs at."""

    name: str
    target_size: int
    model: ModelConfig

    def __post_init__(self) -> None:
        if self.target_size <= 0 or self.target_size % 256:
            raise ConfigError(f"target_size must be a positive multiple of 256, got {self.target_size}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, table: dict[str, Any], where: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise ConfigError(f"unknown field(s) in [{where}]: {', '.join(unknown)}")
    values = {}
    for key, value in table.items():
        default = names[key].default
        values[key] = tuple(value) if isinstance(default, tuple) else value
    return cls(**values)


def config_from_dict(data: dict[str, Any]) -> ExportConfig:
    """Build a validated :class:`ExportConfig` from parsed TOML/JSON data."""
    data = dict(data)
    model_table = dict(data.pop("model", {}))
    parts = {
        "backbone": BackboneConfig,
        "edge_detector": EdgeDetectorConfig,
        "neck": NeckConfig,
        "decode_head": DecodeHeadConfig,
    }
    unknown = sorted(set(model_table) - set(parts))
    if unknown:
        raise ConfigError(f"unknown table(s) in [model]: {', '.join(unknown)}")
    model = ModelConfig(**{
        part: _build(cls, model_table.get(part, {}), f"model.{part}") for part, cls in parts.items()
    })
    missing = [key for key in ("name", "target_size") if key not in data]
    if missing:
        raise ConfigError(f"config is missing: {', '.join(missing)}")
    name, target_size = data.pop("name"), data.pop("target_size")
    if data:
        raise ConfigError(f"unknown top-level field(s): {', '.join(sorted(data))}")
    return ExportConfig(name=name, target_size=int(target_size), model=model)


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
