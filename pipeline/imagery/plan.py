"""``skyscript imagery plan``: which chip each object gets, from which collection — no pixels.

One row per planned chip (an object with ``images_per_object: N`` may have up to N), or one
failed row per object that gets none: ``key, osm_type, osm_id, source, collection, gsd, crs,
transform, width, height, bbox, max_gsd, status, error_message``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import BuildConfig
from pipeline.imagery.router import ImageryRouter
from pipeline.records import STATUS_FAILED, STATUS_OK, ChipRequest, OsmObject
from pipeline.seams import TagVisibility

SCHEMA = pa.schema([
    ("key", pa.string()), ("osm_type", pa.string()), ("osm_id", pa.int64()), ("source", pa.string()),
    ("collection", pa.string()), ("gsd", pa.float64()), ("crs", pa.string()),
    ("transform", pa.list_(pa.float64(), 6)), ("width", pa.int32()), ("height", pa.int32()),
    ("bbox", pa.list_(pa.float64(), 4)), ("max_gsd", pa.float64()), ("status", pa.string()),
    ("error_message", pa.string()),
])


def plan_rows(
    objs: Iterable[OsmObject],
    router: ImageryRouter,
    vis: TagVisibility,
    cfg: BuildConfig,
    *,
    date: str | None = None,
    on_object: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for obj in objs:
        max_gsd = vis.max_gsd(obj.tags)
        planned = router.plan(obj, cfg.planner, cfg.seed, max_gsd=max_gsd, date=date)
        if isinstance(planned, str):
            rows.append(_failed(obj, planned, max_gsd))
        else:
            rows.extend(_ok(obj, r, max_gsd) for r in planned)
        if on_object is not None:
            on_object()
    return rows


def _ok(obj: OsmObject, r: ChipRequest, max_gsd: float | None) -> dict[str, Any]:
    return {"key": r.key, "osm_type": obj.osm_type, "osm_id": int(obj.osm_id), "source": r.source or "local",
            "collection": r.collection, "gsd": r.gsd, "crs": r.crs, "transform": list(r.transform),
            "width": r.width, "height": r.height, "bbox": list(r.bbox), "max_gsd": max_gsd,
            "status": STATUS_OK, "error_message": ""}


def _failed(obj: OsmObject, reason: str, max_gsd: float | None) -> dict[str, Any]:
    return {"key": obj.key, "osm_type": obj.osm_type, "osm_id": int(obj.osm_id), "source": None,
            "collection": None, "gsd": None, "crs": None, "transform": None, "width": None, "height": None,
            "bbox": None, "max_gsd": max_gsd, "status": STATUS_FAILED, "error_message": reason}


def write_plan(path: str | Path, rows: list[dict[str, Any]]) -> None:
    from storage.atomic import publishing
    from storage.geoparquet import GEOMETRY_COLUMN, boxes_wkb, with_geo

    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    # GeoParquet: each chip's footprint (its WGS84 bbox), so geopandas and QGIS open the plan as it is.
    boxes = [r["bbox"] for r in rows]
    geom = boxes_wkb(*(np.array([b[i] if b else np.nan for b in boxes], float) for i in range(4))) if rows else \
        pa.array([], pa.binary())
    geom = pa.array([g if b else None for g, b in zip(geom.to_pylist(), boxes, strict=True)], pa.binary())
    table = with_geo(table.append_column(GEOMETRY_COLUMN, geom), geometry_types=["Polygon"])
    with publishing(path) as tmp:
        pq.write_table(table, tmp)
