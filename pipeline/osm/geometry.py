"""Geometry building and repair shared by the OSM sources (WGS84 lon/lat, shapely 2)."""

from __future__ import annotations

import shapely
from shapely.geometry import LineString, MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from pipeline.geo import BBox


class GeometryFailure(ValueError):
    """An object's geometry cannot be built; the message becomes the failed row's reason."""


def polygonal_part(geom: BaseGeometry) -> BaseGeometry | None:
    """Polygon/MultiPolygon part of ``geom`` (``make_valid`` may return collections)."""
    if isinstance(geom, Polygon | MultiPolygon):
        return None if geom.is_empty else geom
    parts = getattr(geom, "geoms", [])
    polys = [g for g in parts if isinstance(g, Polygon | MultiPolygon) and not g.is_empty]
    if not polys:
        return None
    merged = shapely.union_all(polys)
    return merged if isinstance(merged, Polygon | MultiPolygon) and not merged.is_empty else None


def repair_polygonal(geom: BaseGeometry, what: str) -> BaseGeometry:
    """Valid polygonal geometry, repairing with ``make_valid`` when needed."""
    if geom.is_valid and not geom.is_empty:
        return geom
    fixed = polygonal_part(shapely.make_valid(geom))
    if fixed is None:
        raise GeometryFailure(f"{what} has a degenerate polygon with no area, even after repair")
    return fixed


def way_geometry(line: LineString, area: bool, what: str) -> BaseGeometry:
    """``line`` itself, or a Polygon of its ring when ``area`` (the caller checked it is closed)."""
    if line.length == 0:
        raise GeometryFailure(f"{what} has fewer than 2 distinct node locations")
    if area and shapely.get_num_coordinates(line) >= 4:
        return repair_polygonal(shapely.polygons(line.coords), what)
    return line


def as_multipolygon(geom: BaseGeometry) -> MultiPolygon:
    """Relations always come out as MultiPolygon, whatever repair returned."""
    if isinstance(geom, MultiPolygon):
        return geom
    if isinstance(geom, Polygon):
        return MultiPolygon([geom])
    raise GeometryFailure(f"expected a polygonal geometry, got {geom.geom_type}")


def intersects_bbox(geom: BaseGeometry, bbox: BBox) -> bool:
    """Cheap bounds test first; the exact test only for candidates."""
    if not bbox.intersects(geom.bounds):
        return False
    return bool(geom.intersects(shapely.box(*bbox.as_tuple())))
