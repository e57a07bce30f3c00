"""Which objects a pass keeps: everything, a bbox, or a whole plan (cells + targeted tags).

Selectors see cheap facts first (a node's location, a way's bounds) so that most objects
are rejected before any shapely geometry is built.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from shapely.geometry.base import BaseGeometry

from pipeline.geo import BBox
from pipeline.osm.geometry import intersects_bbox

Bounds = tuple[float, float, float, float]


class Selector(Protocol):
    def point(self, lon: float, lat: float, tags: Mapping[str, str]) -> bool: ...

    def maybe(self, bounds: Bounds, tags: Mapping[str, str]) -> bool:
        """False only when an object with these bounds can never be selected."""
        ...

    def geometry(self, geom: BaseGeometry, tags: Mapping[str, str]) -> bool: ...

    def unlocated(self, tags: Mapping[str, str]) -> bool:
        """Keep a failed object whose location is unknown (broken relation)?"""
        ...

    def describe(self) -> dict: ...


class SelectAll:
    def point(self, lon: float, lat: float, tags: Mapping[str, str]) -> bool:
        return True

    def maybe(self, bounds: Bounds, tags: Mapping[str, str]) -> bool:
        return True

    def geometry(self, geom: BaseGeometry, tags: Mapping[str, str]) -> bool:
        return True

    def unlocated(self, tags: Mapping[str, str]) -> bool:
        return True

    def describe(self) -> dict:
        return {"select": "all"}


class SelectBBox:
    """Objects whose geometry intersects a WGS84 box."""

    def __init__(self, bbox: BBox) -> None:
        self.bbox = bbox

    def point(self, lon: float, lat: float, tags: Mapping[str, str]) -> bool:
        return self.bbox.contains_point(lon, lat)

    def maybe(self, bounds: Bounds, tags: Mapping[str, str]) -> bool:
        return self.bbox.intersects(bounds)

    def geometry(self, geom: BaseGeometry, tags: Mapping[str, str]) -> bool:
        return intersects_bbox(geom, self.bbox)

    def unlocated(self, tags: Mapping[str, str]) -> bool:
        return False  # cannot tell whether it lies in the box; the unfiltered read reports it

    def describe(self) -> dict:
        return {"select": "bbox", "bbox": list(self.bbox.as_tuple())}


def selector_for(bbox: BBox | None) -> Selector:
    return SelectAll() if bbox is None else SelectBBox(bbox)


def bbox_of_points(points: Iterable[tuple[float, float]]) -> Bounds:
    pts = list(points)
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    return (min(xs), min(ys), max(xs), max(ys))
