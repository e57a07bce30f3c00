"""Stage configs and the root config, loaded from YAML presets shipped as package data.

No global mutable settings: the resolved :class:`BuildConfig` is passed to every stage
(Dask workers receive it pickled) and written to ``run.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError, InputFileError

# Keys whose values must never reach run.json or logs.
SECRET_MARKERS = ("key", "secret", "token", "password", "credential")


@dataclass(frozen=True)
class OsmConfig:
    """How objects are read (file sources here; Overpass settings live beside them)."""

    skip_untagged: bool = True
    # Tags that say nothing about what an object *is*; an object with only these is skipped.
    uninteresting_keys: tuple[str, ...] = ("created_by", "source", "note", "fixme", "FIXME")


@dataclass(frozen=True)
class PlannerConfig:
    """Object-centred tile planning."""

    tile_px_min: int = 224
    tile_px_max: int = 512
    margin_frac: float = 0.2  # polygon bbox grows by this fraction on each side
    jitter: bool = True  # seeded random shift that keeps the object inside the tile
    max_object_px: int = 4096  # objects larger than this at native GSD fail with a reason
    gsd: float | None = None  # force a GSD (m/px); None: the covering raster's native GSD


@dataclass(frozen=True)
class CaptionConfig:
    """Caption assembly."""

    max_surrounding: int = 10  # at most this many neighbours in the multi-object caption
    unknown_tags: str = "drop"  # "drop" or "model": tags without a label


@dataclass(frozen=True)
class ShardConfig:
    """Writer settings."""

    shard_size: int = 256
    jpeg_quality: int = 90


@dataclass(frozen=True)
class BuildConfig:
    """The root config of ``skyscript build``."""

    seed: int = 0
    max_objects: int | None = None
    osm: OsmConfig = field(default_factory=OsmConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    caption: CaptionConfig = field(default_factory=CaptionConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)

    def to_dict(self) -> dict[str, Any]:
        return redact(dataclasses.asdict(self))

    def fingerprint(self) -> str:
        """Stable hash of everything that changes which samples are produced."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def replace(self, **changes: Any) -> BuildConfig:
        return dataclasses.replace(self, **changes)


def redact(obj: Any) -> Any:
    """Copy of a JSON-like structure with secret-looking values replaced."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if isinstance(k, str) and any(m in k.lower() for m in SECRET_MARKERS) and v:
                out[k] = "***"
            else:
                out[k] = redact(v)
        return out
    if isinstance(obj, list | tuple):
        return [redact(v) for v in obj]
    return obj


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Turn a YAML value into the dataclass field's type, with errors naming the key."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key {where!r} must be a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key {where!r} must be a list, got {value!r}")
        return tuple(value)
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool) and not isinstance(value, tp):
        raise ConfigError(f"config key {where!r} must be {tp.__name__}, got {value!r}")
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"config key {where!r} must be int, got {value!r}")
    return value


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from a dict, rejecting unknown keys by name."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key(s) {[prefix + u for u in unknown]}; valid keys here: {sorted(names)}"
        )
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("pipeline.presets").iterdir() if p.name.endswith(".yaml"))


def _read_yaml(text: str, origin: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {origin} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config {origin} must be a YAML mapping at the top level")
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | Path | None = None, preset: str = "default", **overrides: Any) -> BuildConfig:
    """Preset, then the user's YAML file on top, then CLI overrides (None values ignored)."""
    names = preset_names()
    if preset not in names:
        raise ConfigError(f"unknown preset {preset!r}; available presets: {names}")
    data = _read_yaml(resources.files("pipeline.presets").joinpath(f"{preset}.yaml").read_text(), preset)
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise InputFileError(f"config file not found: {str(p)!r}. Pass a YAML file to --config.")
        data = _merge(data, _read_yaml(p.read_text(), str(p)))
    data = _merge(data, {k: v for k, v in overrides.items() if v is not None})
    return from_dict(BuildConfig, data)
