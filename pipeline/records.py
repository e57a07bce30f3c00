"""The small frozen records that flow between stages.

Geometries are shapely objects in WGS84 lon/lat. Tag dicts are never mutated after
construction (treat them as read-only); they are plain dicts so records pickle cheaply
for Dask workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from shapely.geometry.base import BaseGeometry

OsmType = Literal["node", "way", "relation"]
OSM_TYPES: tuple[OsmType, ...] = ("node", "way", "relation")
STATUS_OK = "ok"
STATUS_FAILED = "failed"


def make_key(osm_type: str, osm_id: int) -> str:
    """Sample key for an OSM object: ``n123``, ``w456``, ``r789`` (no dots, ever)."""
    if osm_type not in OSM_TYPES:
        raise ValueError(f"osm_type must be one of {OSM_TYPES}, got {osm_type!r}")
    prefix = osm_type[0]
    sign = "m" if osm_id < 0 else ""  # negative ids appear in unsaved/JOSM files
    return f"{prefix}{sign}{abs(int(osm_id))}"


@dataclass(frozen=True, slots=True)
class OsmObject:
    """One tagged OSM element with its geometry (or a failed row explaining why it has none)."""

    osm_type: OsmType
    osm_id: int
    tags: dict[str, str] = field(hash=False)
    geometry: BaseGeometry | None = field(hash=False, default=None)
    status: str = STATUS_OK
    error_message: str = ""

    @property
    def key(self) -> str:
        return make_key(self.osm_type, self.osm_id)

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK and self.geometry is not None and not self.geometry.is_empty


@dataclass(frozen=True, slots=True)
class ChipRequest:
    """What to cut: a tile on a metric grid around one object.

    ``crs``/``bounds``/``width``/``height`` define the output grid exactly (pixel size =
    ``gsd``); ``bbox`` is the same tile in WGS84 (W, S, E, N), for metadata and coverage.
    """

    key: str
    osm_type: OsmType
    osm_id: int
    bbox: tuple[float, float, float, float]
    crs: str
    bounds: tuple[float, float, float, float]
    width: int
    height: int
    gsd: float
    collection: str
    seed: int
    image_id: str = ""  # a preferred scene/file when the planner already knows it
    source: str = ""  # which imagery source serves ``collection`` ("local", "gee", "stac"); "" = the only one
    date: str | None = None  # ISO target date for closest-to-date picks (GRAFT tiles); None = no target

    @property
    def transform(self) -> tuple[float, float, float, float, float, float]:
        """Affine (a, b, c, d, e, f) of the output grid, north-up."""
        x0, _y0, _x1, y1 = self.bounds
        return (self.gsd, 0.0, x0, 0.0, -self.gsd, y1)


@dataclass(frozen=True, slots=True)
class Chip:
    """Pixels for a request: ``pixels`` is HxWx3 uint8 RGB on the request grid."""

    request: ChipRequest
    pixels: np.ndarray = field(hash=False, compare=False)
    source: str  # "local", "gee", "stac"
    collection: str
    image_id: str  # file name or scene id the pixels came from
    acquired: str | None = None  # ISO date when known
    native_gsd: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def crs(self) -> str:
        return self.request.crs

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


@dataclass(frozen=True, slots=True)
class Pair:
    """An image-text pair ready for the writer."""

    key: str
    obj: OsmObject
    chip: Chip
    visible_tags: dict[str, str] = field(hash=False)
    caption_single: str
    caption_multi: str
    surrounding: list[dict[str, str]] = field(hash=False, default_factory=list)
    centre: tuple[float, float] | None = None  # the chip grid's centre, WGS84 (None: from the bbox)
    object_point: tuple[float, float] | None = None  # a point on the object, WGS84

    def metadata(self) -> dict[str, Any]:
        """The ``{key}.json`` payload (the output contract in ARCHITECTURE.md).

        ``lon``/``lat`` is the chip's centre; ``object_lon``/``object_lat`` a point on the object
        (for a line, the vertex the tile is centred on; for a polygon, a point inside it).
        """
        req = self.chip.request
        w, s, e, n = req.bbox
        lon, lat = self.centre if self.centre is not None else ((w + e) / 2.0, (s + n) / 2.0)
        olon: float | None
        olat: float | None
        if self.object_point is not None:
            olon, olat = self.object_point
        elif self.obj.geometry is not None:
            p = self.obj.geometry.representative_point()
            olon, olat = p.x, p.y
        else:
            olon = olat = None
        prov = dict(self.chip.provenance)
        clouds = prov.get("cloud_cover")  # per scene used, first (the main one) first, where known
        cloud = clouds[0] if isinstance(clouds, list) and clouds else clouds
        return {
            "key": self.key,
            "osm_type": self.obj.osm_type,
            "osm_id": int(self.obj.osm_id),
            "tags": dict(self.obj.tags),
            "visible_tags": dict(self.visible_tags),
            "caption_single": self.caption_single,
            "caption_multi": self.caption_multi,
            "surrounding": [dict(s) for s in self.surrounding],
            "lon": float(lon),
            "lat": float(lat),
            "object_lon": None if olon is None else float(olon),
            "object_lat": None if olat is None else float(olat),
            "bbox": [float(v) for v in req.bbox],
            "gsd": float(req.gsd),
            "native_gsd": None if self.chip.native_gsd is None else float(self.chip.native_gsd),
            "source": self.chip.source,
            "collection": self.chip.collection,
            "image_id": self.chip.image_id,
            "acquired": self.chip.acquired,
            "crs": req.crs,
            "bounds": [float(v) for v in req.bounds],
            "transform": [float(v) for v in req.transform],
            "width": self.chip.width,
            "height": self.chip.height,
            "empty_fraction": None if prov.get("empty_fraction") is None else float(prov["empty_fraction"]),
            "resampling": prov.get("resampling"),
            "cloud_cover": float(cloud) if isinstance(cloud, int | float) else None,
            "provenance": prov,
        }
