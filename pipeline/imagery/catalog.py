"""The imagery collection catalog: collections as data (``catalog.yaml`` shipped beside this file).

A user catalog (``--catalog FILE`` or the config key ``imagery.catalog``) is layered over the
shipped one: an entry whose ``id`` exists overrides that entry key by key (so ``max_cloud: 5``
alone tightens one filter); a new ``id`` adds a collection (``id``, ``source``, ``gsd``,
``bands``, ``range``, ``coverage`` are then required). Unknown keys are errors, so a typo never
silently falls back to a default.

Coverage is kept as a WGS84 shapely geometry: a ``[W, S, E, N]`` box (``W > E`` crosses the
antimeridian and becomes two boxes), a GeoJSON file path relative to the catalog file that names
it, or ``global``.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from shapely.geometry import MultiPolygon, box, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from pipeline.errors import ConfigError, InputFileError

SOURCES = ("gee", "stac")
TYPES = ("ImageCollection", "Image")
PICKS = ("most-recent", "least-cloudy", "closest-to-date")
SIGNERS = ("none", "planetary-computer")
REQUIRED = ("id", "source", "gsd", "bands", "range", "coverage")
OPTIONAL = {
    "type": "ImageCollection",
    "dates": [None, None],
    "pick": "most-recent",
    "cloud_property": None,
    "max_cloud": None,
    # STAC only: the collection id at the API (default: id), the API root it lives in (default:
    # any --imagery stac:URL), and how its asset URLs are signed.
    "collection": None,
    "url": None,
    "sign": "none",
    "sign_url": None,
    "title": None,
    "license": None,
}
GLOBAL = box(-180.0, -90.0, 180.0, 90.0)
PC_SIGN_URL = "https://planetarycomputer.microsoft.com/api/sas/v1"


@dataclass(frozen=True)
class CatalogEntry:
    """One collection. ``coverage`` is WGS84; ``dates`` are inclusive ISO dates (None = open)."""

    id: str
    source: str
    gsd: float
    bands: tuple[str, str, str]
    range: tuple[float, float]
    coverage: BaseGeometry = field(compare=False, repr=False)
    coverage_spec: str = ""
    type: str = "ImageCollection"
    dates: tuple[str | None, str | None] = (None, None)
    pick: str = "most-recent"
    cloud_property: str | None = None
    max_cloud: float | None = None
    collection: str | None = None
    url: str | None = None
    sign: str = "none"
    sign_url: str | None = None
    title: str | None = None
    license: str | None = None

    @property
    def remote_id(self) -> str:
        """The id the service knows (a STAC collection id may differ from the catalog id)."""
        return self.collection or self.id

    def admits(self, date: str | None = None, today: str | None = None) -> bool:
        """Whether the date range can hold an image (on ``date`` when a target date is given)."""
        start, end = self.dates
        today = today or _dt.date.today().isoformat()
        if start is not None and start > today:
            return False
        if start is not None and end is not None and start > end:
            return False
        if date is not None:
            return (start is None or start <= date[:10]) and (end is None or date[:10] <= end)
        return True

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id, "source": self.source, "type": self.type, "gsd": self.gsd, "bands": list(self.bands),
            "range": list(self.range), "coverage": self.coverage_spec, "dates": list(self.dates), "pick": self.pick,
            "cloud_property": self.cloud_property, "max_cloud": self.max_cloud, "collection": self.collection,
            "url": self.url, "sign": self.sign,
        }


def _date(value: Any, where: str) -> str | None:
    if value is None or value == "null":
        return None
    if isinstance(value, _dt.datetime):
        return value.date().isoformat()
    if isinstance(value, _dt.date):
        return value.isoformat()
    try:
        return _dt.date.fromisoformat(str(value)[:10]).isoformat()
    except ValueError as exc:
        raise ConfigError(f"{where}: dates must be [YYYY-MM-DD or null, YYYY-MM-DD or null], got {value!r}") from exc


def _coverage(spec: Any, base: Path | None, where: str) -> tuple[BaseGeometry, str]:
    if spec == "global" or spec is None:
        return GLOBAL, "global"
    if isinstance(spec, list | tuple):
        if len(spec) != 4 or not all(isinstance(v, int | float) for v in spec):
            raise ConfigError(f"{where}: coverage must be [W, S, E, N] degrees, a .geojson file or 'global'")
        w, s, e, n = (float(v) for v in spec)
        if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s < n <= 90):
            raise ConfigError(f"{where}: coverage {list(spec)} is not a valid W,S,E,N box in degrees")
        if w > e:  # crosses the antimeridian: one box on each side
            return MultiPolygon([box(w, s, 180.0, n), box(-180.0, s, e, n)]), json.dumps(list(spec))
        return box(w, s, e, n), json.dumps(list(spec))
    if isinstance(spec, str):
        return _geojson(spec, base, where), spec
    raise ConfigError(f"{where}: coverage must be [W, S, E, N], a .geojson file or 'global', got {spec!r}")


def _geojson(name: str, base: Path | None, where: str) -> BaseGeometry:
    if base is None:  # the shipped catalog: package data
        text = resources.files("pipeline.imagery").joinpath(name).read_text()
    else:
        path = (base / name) if not Path(name).is_absolute() else Path(name)
        if not path.is_file():
            raise InputFileError(f"{where}: coverage file {str(path)!r} not found; put it beside the catalog")
        text = path.read_text()
    try:
        doc = json.loads(text)
        feats = doc["features"] if doc.get("type") == "FeatureCollection" else [doc]
        geoms = [shape(f["geometry"] if f.get("type") == "Feature" else f) for f in feats]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{where}: coverage file {name!r} is not GeoJSON ({exc})") from exc
    return unary_union(geoms)


def parse_entry(raw: Mapping[str, Any], base: Path | None, origin: str) -> CatalogEntry:
    """One YAML mapping → :class:`CatalogEntry`, with one-line errors naming the entry and key."""
    cid = raw.get("id")
    where = f"catalog {origin}, collection {cid!r}"
    unknown = sorted(set(raw) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted([*REQUIRED, *OPTIONAL])}")
    missing = [k for k in REQUIRED if raw.get(k) is None]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}")
    data = {**OPTIONAL, **raw}
    if data["source"] not in SOURCES:
        raise ConfigError(f"{where}: source must be one of {SOURCES}, got {data['source']!r}")
    if data["type"] not in TYPES:
        raise ConfigError(f"{where}: type must be one of {TYPES}, got {data['type']!r}")
    if data["pick"] not in PICKS:
        raise ConfigError(f"{where}: pick must be one of {PICKS}, got {data['pick']!r}")
    if data["sign"] not in SIGNERS:
        raise ConfigError(f"{where}: sign must be one of {SIGNERS}, got {data['sign']!r}")
    bands = data["bands"]
    if not isinstance(bands, list | tuple) or len(bands) != 3:
        raise ConfigError(f"{where}: bands must list the three bands of the RGB chip, got {bands!r}")
    rng = data["range"]
    if not (isinstance(rng, list | tuple) and len(rng) == 2 and all(isinstance(v, int | float) for v in rng)
            and rng[0] < rng[1]):
        raise ConfigError(f"{where}: range must be [low, high] with low < high, got {rng!r}")
    try:
        gsd = float(data["gsd"])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: gsd must be metres per pixel, got {data['gsd']!r}") from exc
    if gsd <= 0:
        raise ConfigError(f"{where}: gsd must be positive, got {gsd}")
    dates = data["dates"]
    if not isinstance(dates, list | tuple) or len(dates) != 2:
        raise ConfigError(f"{where}: dates must be [start, end] (null = open), got {dates!r}")
    if data["max_cloud"] is not None and data["cloud_property"] is None:
        raise ConfigError(f"{where}: max_cloud needs cloud_property (e.g. CLOUDY_PIXEL_PERCENTAGE, eo:cloud_cover)")
    if data["pick"] == "least-cloudy" and data["cloud_property"] is None:
        raise ConfigError(f"{where}: pick least-cloudy needs cloud_property")
    geom, spec = _coverage(data["coverage"], base, where)
    return CatalogEntry(
        id=str(cid), source=data["source"], gsd=gsd, bands=tuple(str(b) for b in bands),  # type: ignore[arg-type]
        range=(float(rng[0]), float(rng[1])), coverage=geom, coverage_spec=spec, type=data["type"],
        dates=(_date(dates[0], where), _date(dates[1], where)), pick=data["pick"],
        cloud_property=data["cloud_property"],
        max_cloud=None if data["max_cloud"] is None else float(data["max_cloud"]),
        collection=data["collection"], url=None if data["url"] is None else str(data["url"]).rstrip("/"),
        sign=data["sign"], sign_url=data["sign_url"], title=data["title"], license=data["license"],
    )


def _entries(text: str, origin: str) -> list[dict[str, Any]]:
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"catalog {origin} is not valid YAML: {exc}") from exc
    items = doc.get("collections") if isinstance(doc, dict) else None
    if not isinstance(items, list) or not all(isinstance(i, dict) and i.get("id") for i in items):
        raise ConfigError(f"catalog {origin} must hold 'collections:', a list of mappings each with an 'id'")
    return items


@dataclass(frozen=True)
class Catalog:
    """The resolved catalog: entries in file order (shipped first, then user additions)."""

    entries: tuple[CatalogEntry, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {e.id: e for e in self.entries})

    def get(self, cid: str) -> CatalogEntry:
        by_id: dict[str, CatalogEntry] = self._by_id  # type: ignore[attr-defined]
        if cid not in by_id:
            raise ConfigError(f"unknown collection id {cid!r}; the catalog has: {sorted(by_id)}")
        return by_id[cid]

    def ids(self) -> list[str]:
        return [e.id for e in self.entries]

    def for_source(self, source: str) -> list[CatalogEntry]:
        return [e for e in self.entries if e.source == source]


@lru_cache(maxsize=8)
def _load(user: str | None, _stamp: tuple[int, int] = (0, 0)) -> Catalog:  # stamp: a changed file reloads
    raw = _entries(resources.files("pipeline.imagery").joinpath("catalog.yaml").read_text(), "(shipped)")
    merged: dict[str, tuple[dict[str, Any], Path | None, str]] = {r["id"]: (dict(r), None, "(shipped)") for r in raw}
    if user is not None:
        path = Path(user).expanduser()
        if not path.is_file():
            raise InputFileError(f"catalog file not found: {str(path)!r}. Pass a YAML file to --catalog.")
        for r in _entries(path.read_text(), str(path)):
            if r["id"] in merged:
                old, _base, _origin = merged[r["id"]]
                merged[r["id"]] = ({**old, **r}, path.parent, str(path))
            else:
                merged[r["id"]] = (dict(r), path.parent, str(path))
    entries = []
    for data, base, origin in merged.values():
        # A shipped coverage file stays package data even when a user overrides other keys.
        cov_base = base if base is not None and _user_coverage(data, raw) else None
        entries.append(parse_entry(data, cov_base, origin))
    return Catalog(tuple(entries))


def _user_coverage(data: Mapping[str, Any], shipped: Iterable[Mapping[str, Any]]) -> bool:
    for r in shipped:
        if r["id"] == data["id"]:
            return r.get("coverage") != data.get("coverage")
    return True


def load_catalog(user: str | Path | None = None) -> Catalog:
    """The shipped catalog with ``user`` (a YAML file) layered over it; cached per path."""
    if user is None:
        return _load(None)
    path = Path(user).expanduser().resolve()
    stat = path.stat() if path.is_file() else None
    return _load(str(path), (stat.st_mtime_ns, stat.st_size) if stat else (0, 0))


def select(catalog: Catalog, ids: Sequence[str] | None) -> list[CatalogEntry]:
    """Entries named by ``ids`` (unknown ids are a one-line error), or all of them."""
    return list(catalog.entries) if not ids else [catalog.get(i) for i in ids]
