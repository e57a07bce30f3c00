"""Stage configs and the root config, loaded from YAML presets shipped as package data.

No global mutable settings: the resolved :class:`BuildConfig` is passed to every stage
(Dask workers receive it pickled) and written to ``run.json``.

Every field is range-checked when its dataclass is built (``__post_init__``), so a bad value
fails at start-up with one line naming the key, its value and the allowed range — before any
work is done or anything is written. Fields marked ``operational`` (endpoints, timeouts, cache
folders, concurrency) change how a build runs, never which samples it makes: they are left out
of the build's identity (:func:`semantic_dict`), so a resume may change them.
"""

from __future__ import annotations

import dataclasses
import math
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

# Names (lower-case) whose values must never reach run.json or logs, matched whole or as a
# ``_``-suffix, never as substrings: ``uninteresting_keys`` or ``max_tokens`` are ordinary settings.
SECRET_NAMES = frozenset({
    "api_key", "apikey", "key_secret", "token", "access_token", "refresh_token", "id_token", "password",
    "passwd", "secret", "secret_key", "client_secret", "private_key", "private_key_id", "credentials",
    "aws_secret_access_key", "aws_session_token", "authorization",
})
OPERATIONAL = {"operational": True}  # field metadata: left out of the build identity


class ConfigRangeError(ConfigError):
    """A field out of range; :func:`from_dict` prefixes the key's full path."""

    def __init__(self, name: str, value: Any, allowed: str) -> None:
        self.name, self.value, self.allowed = name, value, allowed
        super().__init__(f"config key {name!r} = {value!r} is out of range: {allowed}")

    def at(self, where: str) -> ConfigRangeError:
        return ConfigRangeError(f"{where}.{self.name}" if where else self.name, self.value, self.allowed)


def _check(name: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise ConfigRangeError(name, value, allowed)


def _positive(name: str, value: float | int | None, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    _check(name, value, value is not None and math.isfinite(value) and value > 0, "must be > 0")


def _at_least(name: str, value: int | float, low: int | float) -> None:
    _check(name, value, math.isfinite(value) and value >= low, f"must be >= {low}")


def _within(name: str, value: float, low: float, high: float, *, high_open: bool = False) -> None:
    ok = math.isfinite(value) and low <= value and (value < high if high_open else value <= high)
    _check(name, value, ok, f"must lie in [{low}, {high}{')' if high_open else ']'}")


def _one_of(name: str, value: Any, options: tuple[str, ...]) -> None:
    _check(name, value, value in options, f"must be one of {list(options)}")


@dataclass(frozen=True)
class QueryLimits:
    timeout_s: int = 180  # Overpass [timeout:], server side
    maxsize_bytes: int = 512 * 1024 * 1024  # Overpass [maxsize:], server side

    def __post_init__(self) -> None:
        _positive("timeout_s", self.timeout_s)
        _positive("maxsize_bytes", self.maxsize_bytes)


def _default_cache() -> str:
    from pipeline.cache import cache_dir

    return str(cache_dir("overpass"))


@dataclass(frozen=True)
class OverpassConfig:
    """Endpoints and politeness settings (defaults suit the public instances).

    All operational: a mirror serves the same data, and timeouts or slots change only how long
    acquisition takes. (The cache folder follows ``$SKYSCRIPT_CACHE`` when not set.)
    """

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
        _at_least("slots_per_endpoint", self.slots_per_endpoint, 1)
        _positive("socket_timeout_s", self.socket_timeout_s)
        _positive("read_deadline_s", self.read_deadline_s)
        _at_least("attempts", self.attempts, 1)
        _at_least("backoff_s", self.backoff_s, 0)
        _at_least("max_backoff_s", self.max_backoff_s, self.backoff_s)
        _at_least("status_max_wait_s", self.status_max_wait_s, 0)
        _at_least("slot_max_wait_s", self.slot_max_wait_s, 0)
        _positive("max_query_deg", self.max_query_deg)

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
    overpass: OverpassConfig = field(default_factory=lambda: OverpassConfig(), metadata=OPERATIONAL)


@dataclass(frozen=True)
class PlannerConfig:
    """Object-centred tile planning."""

    tile_px_min: int = 224
    tile_px_max: int = 512
    margin_frac: float = 0.2  # polygon bbox grows by this fraction on each side
    jitter: bool = True  # seeded random shift that keeps the object inside the tile
    max_object_px: int = 4096  # objects larger than this at native GSD fail with a reason
    min_object_px: int = 4  # catalog choice: polygons spanning fewer px at a collection's GSD skip it
    gsd: float | None = None  # force a GSD (m/px); None: the covering raster's native GSD

    def __post_init__(self) -> None:
        _at_least("tile_px_min", self.tile_px_min, 8)
        _at_least("tile_px_max", self.tile_px_max, self.tile_px_min)
        _check("tile_px_max", self.tile_px_max, self.tile_px_max <= 8192, "must be <= 8192")
        _within("margin_frac", self.margin_frac, 0.0, 1.0, high_open=True)
        _at_least("max_object_px", self.max_object_px, self.tile_px_max)
        _positive("gsd", self.gsd, allow_none=True)


@dataclass(frozen=True)
class CaptionConfig:
    """Caption assembly."""

    max_surrounding: int = 10  # at most this many neighbours in the multi-object caption
    # Tags no label row covers: "model" decides them with the default tag classifier (trained
    # once on first need and cached), "drop" leaves them out. --tag-model DIR picks a model.
    unknown_tags: str = "model"

    def __post_init__(self) -> None:
        _at_least("max_surrounding", self.max_surrounding, 0)
        _one_of("unknown_tags", self.unknown_tags, ("model", "drop"))


@dataclass(frozen=True)
class TagClassifierConfig:
    """The model that decides tags without a label (caption.unknown_tags: model)."""

    # auto: CLIP ViT-L/14 text embeddings when its weights are cached or downloadable (as SkyScript
    # did), the offline MiniLM otherwise; decided once per build and recorded in run.json.
    embedder: str = "auto"

    def __post_init__(self) -> None:
        _one_of("embedder", self.embedder, ("auto", "clip", "minilm"))


@dataclass(frozen=True)
class ShardConfig:
    """Writer settings."""

    shard_size: int = 256
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        _at_least("shard_size", self.shard_size, 1)
        _within("jpeg_quality", self.jpeg_quality, 1, 100)


@dataclass(frozen=True)
class GeeConfig:
    """Earth Engine access (credentials never live here: see pipeline/imagery/gee.py)."""

    url: str | None = None  # None: $SKYSCRIPT_EE_URL, else the high-volume endpoint
    max_concurrent: int = 20  # requests in flight, shared by every process on the machine

    def __post_init__(self) -> None:
        _at_least("max_concurrent", self.max_concurrent, 1)


@dataclass(frozen=True)
class ImageryConfig:
    """Imagery sources and chip acceptance."""

    max_nodata_frac: float = 0.05  # chips with a larger empty share become failed rows (nodata)
    catalog: str | None = None  # a user catalog YAML layered over the shipped one
    choose: str = "finest"  # finest | random (seeded) among the candidate collections
    images_per_object: int = 1  # up to N chips of one object from distinct collections
    gee: GeeConfig = field(default_factory=GeeConfig, metadata=OPERATIONAL)

    def __post_init__(self) -> None:
        _within("max_nodata_frac", self.max_nodata_frac, 0.0, 1.0)
        _one_of("choose", self.choose, ("finest", "random"))
        _at_least("images_per_object", self.images_per_object, 1)


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
    # The *resolved* embedder enters the identity (through the visibility description), not "auto".
    tag_classifier: TagClassifierConfig = field(default_factory=TagClassifierConfig, metadata=OPERATIONAL)

    def __post_init__(self) -> None:
        _at_least("seed", self.seed, 0)
        if self.max_objects is not None:
            _at_least("max_objects", self.max_objects, 1)

    def to_dict(self) -> dict[str, Any]:
        """Everything, secrets redacted (for run.json and logs)."""
        return redact(dataclasses.asdict(self))

    def semantic(self) -> dict[str, Any]:
        """Only what decides which samples are made (unredacted; operational fields left out)."""
        return semantic_dict(self)

    def replace(self, **changes: Any) -> BuildConfig:
        return dataclasses.replace(self, **changes)


def semantic_dict(obj: Any) -> Any:
    """``dataclasses.asdict`` without the fields marked operational (recursively)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: semantic_dict(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if not f.metadata.get("operational")
        }
    if isinstance(obj, list | tuple):
        return [semantic_dict(v) for v in obj]
    return obj


def is_secret_name(name: object) -> bool:
    """A secret's name: one of :data:`SECRET_NAMES`, alone or as a ``_``-suffix (``flickr_api_key``).

    Never a substring match: ``uninteresting_keys`` and ``max_tokens`` are ordinary settings.
    """
    if not isinstance(name, str):
        return False
    low = name.lower()
    return low in SECRET_NAMES or any(low.endswith("_" + s) for s in SECRET_NAMES)


def redact(obj: Any) -> Any:
    """Copy of a JSON-like structure with the values of secret names (exact match) replaced."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if is_secret_name(k) and v:
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
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
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
    try:
        return cls(**kwargs)
    except ConfigRangeError as exc:
        raise exc.at(where) from None


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
