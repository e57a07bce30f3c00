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
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import BadInputError, ConfigError, InputFileError

# Keys whose values must never reach run.json or logs.
SECRET_MARKERS = ("key", "secret", "token", "password", "credential")


@dataclass(frozen=True)
class QueryLimits:
    timeout_s: int = 180  # Overpass [timeout:], server side
    maxsize_bytes: int = 512 * 1024 * 1024  # Overpass [maxsize:], server side


def _default_cache() -> str:
    return str(Path.home() / ".cache" / "skyscript" / "overpass")


@dataclass(frozen=True)
class OverpassConfig:
    """Endpoints and politeness settings (defaults suit the public instances)."""

    endpoints: tuple[str, ...] = ("https://overpass-api.de/api", "https://overpass.private.coffee/api")
    slots_per_endpoint: int = 2  # concurrent queries per endpoint, shared by all local processes
    socket_timeout_s: float = 240.0  # per socket operation; above the server-side [timeout:]
    read_deadline_s: float = 900.0  # whole body
    attempts: int = 5
    backoff_s: float = 2.0
    max_backoff_s: float = 120.0
    status_max_wait_s: float = 600.0
    slot_max_wait_s: float = 3600.0
    limits: QueryLimits = field(default_factory=QueryLimits)
    max_query_deg: float = 0.25  # a --bbox larger than this is split into tiles
    cache_dir: str | None = field(default_factory=_default_cache)  # None: no cache
    slot_dir: str | None = None  # None: <tmp>/skyscript-overpass-slots
    user_agent: str = "skyscript-toolkit/0.1 (+https://github.com/; dataset research)"

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise BadInputError("Overpass endpoint list is empty; pass overpass:URL")
        object.__setattr__(self, "endpoints", tuple(normalise_endpoint(e) for e in self.endpoints))

    def with_endpoints(self, endpoints: Iterable[str]) -> OverpassConfig:
        return dataclasses.replace(self, endpoints=tuple(endpoints))

    def replace(self, **changes: Any) -> OverpassConfig:
        return dataclasses.replace(self, **changes)


def normalise_endpoint(url: str) -> str:
    """``https://host/api`` from ``https://host/api/``, ``.../api/interpreter`` or ``.../api/status``."""
    text = url.strip().rstrip("/")
    for suffix in ("/interpreter", "/status"):
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadInputError(f"bad Overpass endpoint {url!r}: use overpass:https://host/api")
    return text


@dataclass(frozen=True)
class OsmConfig:
    """How objects are read (file sources here; Overpass settings live beside them)."""

    skip_untagged: bool = True
    # Tags that say nothing about what an object *is*; an object with only these is skipped.
    uninteresting_keys: tuple[str, ...] = ("created_by", "source", "note", "fixme", "FIXME")
    overpass: OverpassConfig = field(default_factory=lambda: OverpassConfig())


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
    # Tags no label row covers: "model" decides them with the default tag classifier (trained
    # once on first need and cached), "drop" leaves them out. --tag-model DIR picks a model.
    unknown_tags: str = "model"

    def __post_init__(self) -> None:
        if self.unknown_tags not in ("model", "drop"):
            raise ConfigError(f"caption.unknown_tags must be 'model' or 'drop', got {self.unknown_tags!r}")


@dataclass(frozen=True)
class ShardConfig:
    """Writer settings."""

    shard_size: int = 256
    jpeg_quality: int = 90


@dataclass(frozen=True)
class GeeConfig:
    """Earth Engine access (credentials never live here: see pipeline/imagery/gee.py)."""

    url: str | None = None  # None: $SKYSCRIPT_EE_URL, else the high-volume endpoint
    max_concurrent: int = 20  # requests in flight, shared by every process on the machine


@dataclass(frozen=True)
class ImageryConfig:
    """Imagery sources and chip acceptance."""

    max_nodata_frac: float = 0.05  # chips with a larger empty share become failed rows (nodata)
    catalog: str | None = None  # a user catalog YAML layered over the shipped one
    choose: str = "finest"  # finest | random (seeded) among the candidate collections
    images_per_object: int = 1  # up to N chips of one object from distinct collections
    gee: GeeConfig = field(default_factory=GeeConfig)


@dataclass(frozen=True)
class BuildConfig:
    """The root config of ``skyscript build``."""

    seed: int = 0
    max_objects: int | None = None
    osm: OsmConfig = field(default_factory=OsmConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    caption: CaptionConfig = field(default_factory=CaptionConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)
    imagery: ImageryConfig = field(default_factory=ImageryConfig)

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
