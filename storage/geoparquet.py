"""GeoParquet: the ``geo`` file metadata that lets geopandas, QGIS and GDAL open our tables as they are.

Our tables keep geometry as WKB in a ``geometry`` column (WGS84 longitude/latitude, x before y as
GeoParquet requires whatever the CRS's axis order). This module only adds the metadata
(GeoParquet 1.1.0) and turns W/S/E/N box columns into WKB polygons for the plan tables.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import shapely

GEOPARQUET_VERSION = "1.1.0"
GEOMETRY_COLUMN = "geometry"


@lru_cache(maxsize=1)
def wgs84_projjson() -> dict[str, Any]:
    import pyproj

    return pyproj.CRS("EPSG:4326").to_json_dict()


def geo_metadata(column: str = GEOMETRY_COLUMN, geometry_types: Sequence[str] = (),
                 bbox: Sequence[float] | None = None) -> dict[bytes, bytes]:
    """The ``geo`` key for a table whose ``column`` holds WKB in WGS84 (``geometry_types`` empty: any)."""
    col: dict[str, Any] = {"encoding": "WKB", "geometry_types": list(geometry_types), "crs": wgs84_projjson()}
    if bbox is not None:
        col["bbox"] = [float(v) for v in bbox]
    meta = {"version": GEOPARQUET_VERSION, "primary_column": column, "columns": {column: col}}
    return {b"geo": json.dumps(meta).encode()}


def with_geo(table: pa.Table, column: str = GEOMETRY_COLUMN, geometry_types: Sequence[str] = ()) -> pa.Table:
    """``table`` with the ``geo`` metadata merged into what it already has (bbox computed)."""
    bbox = None
    if table.num_rows:
        geoms = shapely.from_wkb(table.column(column).to_numpy(zero_copy_only=False))
        geoms = geoms[~shapely.is_missing(geoms)]
        if len(geoms):
            bounds = shapely.bounds(geoms)
            bbox = [bounds[:, 0].min(), bounds[:, 1].min(), bounds[:, 2].max(), bounds[:, 3].max()]
    meta = dict(table.schema.metadata or {})
    meta.update(geo_metadata(column, geometry_types, bbox))
    return table.replace_schema_metadata(meta)


def boxes_wkb(west: Any, south: Any, east: Any, north: Any) -> pa.Array:
    """WKB polygons of W/S/E/N boxes (array-likes of equal length)."""
    polys = shapely.box(np.asarray(west, float), np.asarray(south, float), np.asarray(east, float),
                        np.asarray(north, float))
    return pa.array(shapely.to_wkb(np.atleast_1d(polys)).tolist(), type=pa.binary())


def add_box_geometry(table: pa.Table) -> pa.Table:
    """Append a ``geometry`` polygon column built from the table's west/south/east/north columns."""
    if table.num_rows:
        geom = boxes_wkb(*(table.column(c).to_numpy() for c in ("west", "south", "east", "north")))
    else:
        geom = pa.array([], type=pa.binary())
    return with_geo(table.append_column(GEOMETRY_COLUMN, geom), geometry_types=["Polygon"])


def points_wkb(lon: Any, lat: Any) -> pa.Array:
    """WKB points (lon/lat array-likes of equal length)."""
    pts = shapely.points(np.asarray(lon, float), np.asarray(lat, float))
    return pa.array(shapely.to_wkb(np.atleast_1d(pts)).tolist(), type=pa.binary())


def grid_outlines_wkb(crs: Sequence[str], transform: Sequence[Sequence[float]], width: Sequence[int],
                      height: Sequence[int], edge_points: int = 9) -> pa.Array:
    """WGS84 outlines (WKB polygons, densified edges) of pixel grids given by CRS, affine, size."""
    from pyproj import Transformer

    out: list[bytes | None] = []
    cache: dict[str, Transformer] = {}
    steps = np.linspace(0.0, 1.0, edge_points)
    for c, t, w, h in zip(crs, transform, width, height, strict=True):
        if not c or t is None:
            out.append(None)
            continue
        tr = cache.setdefault(c, Transformer.from_crs(c, "EPSG:4326", always_xy=True))
        cols = np.concatenate([steps * w, np.full(edge_points, w), (1 - steps) * w, np.zeros(edge_points)])
        rows = np.concatenate([np.zeros(edge_points), steps * h, np.full(edge_points, h), (1 - steps) * h])
        a, b, x0, d, e, y0 = t
        lon, lat = tr.transform(a * cols + b * rows + x0, d * cols + e * rows + y0)
        out.append(shapely.to_wkb(shapely.Polygon(np.column_stack([lon, lat]))))
    return pa.array(out, type=pa.binary())
