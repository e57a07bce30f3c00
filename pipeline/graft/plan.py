"""The GRAFT plan on disk: ``tiles.parquet``, ``photos.parquet``, ``photos_rejected.parquet`` and
``plan_stats.json`` — each published atomically, the stats file last (the plan's done marker).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import InputFileError
from pipeline.graft.photos import PhotoTable, Rejected
from pipeline.graft.tiling import TilePlan, TilingConfig
from storage.atomic import publishing, write_parquet

TILES_SCHEMA = pa.schema([
    ("tile_id", pa.string()), ("lon", pa.float64()), ("lat", pa.float64()), ("crs", pa.string()),
    ("transform", pa.list_(pa.float64())), ("width", pa.int32()), ("height", pa.int32()),
    ("date", pa.string()), ("n_photos", pa.int32()), ("group", pa.string()), ("split", pa.string()),
    ("gsd", pa.float64()),
])
PHOTOS_SCHEMA = pa.schema([
    ("photo_id", pa.string()), ("tile_id", pa.string()), ("lon", pa.float64()), ("lat", pa.float64()),
    ("date", pa.string()), ("px_x", pa.float64()), ("px_y", pa.float64()), ("path", pa.string()),
    ("url", pa.string()), ("indoor", pa.float64()),
])
REJECTED_SCHEMA = pa.schema([
    ("photo_id", pa.string()), ("lon", pa.float64()), ("lat", pa.float64()), ("status", pa.string()),
    ("error_code", pa.string()), ("error_message", pa.string()),
])
PLAN_FILES = ("tiles.parquet", "photos.parquet", "photos_rejected.parquet", "plan_stats.json")


def rejected_table(rows: list[Rejected]) -> pa.Table:
    return pa.Table.from_pylist(
        [{**asdict(r), "status": "failed"} for r in rows], schema=REJECTED_SCHEMA
    )


def write_plan(
    out: Path, plan: TilePlan, table: PhotoTable, cfg: TilingConfig, source: dict[str, Any]
) -> dict[str, Any]:
    """Publish the plan under ``out``; returns the stats written to ``plan_stats.json``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "plan_stats.json").unlink(missing_ok=True)  # not done until rewritten last
    tiles = pa.Table.from_pylist(
        [{**asdict(t), "transform": list(t.transform)} for t in plan.tiles], schema=TILES_SCHEMA
    )
    photos = pa.Table.from_pylist(
        [
            {"photo_id": a.photo.photo_id, "tile_id": a.tile_id, "lon": a.photo.lon, "lat": a.photo.lat,
             "date": a.photo.date, "px_x": a.px_x, "px_y": a.px_y, "path": a.photo.path, "url": a.photo.url,
             "indoor": a.photo.indoor}
            for a in plan.assignments
        ],
        schema=PHOTOS_SCHEMA,
    )
    # GeoParquet: tiles as their WGS84 outlines, photos as points (geopandas / QGIS open them as they are).
    from storage.geoparquet import GEOMETRY_COLUMN, grid_outlines_wkb, points_wkb, with_geo

    outlines = grid_outlines_wkb(tiles.column("crs").to_pylist(), tiles.column("transform").to_pylist(),
                                 tiles.column("width").to_pylist(), tiles.column("height").to_pylist())
    tiles = with_geo(tiles.append_column(GEOMETRY_COLUMN, outlines), geometry_types=["Polygon"])
    photos = with_geo(photos.append_column(GEOMETRY_COLUMN, points_wkb(photos.column("lon").to_numpy(),
                                                                        photos.column("lat").to_numpy())),
                      geometry_types=["Point"])
    write_parquet(tiles, out / "tiles.parquet")
    write_parquet(photos, out / "photos.parquet")
    write_parquet(rejected_table([*table.rejected, *plan.rejected]), out / "photos_rejected.parquet")
    stats = {
        "config": asdict(cfg),
        "source": source,
        "columns": table.columns,
        "input": table.counts(),
        **plan.stats,
    }
    with publishing(out / "plan_stats.json") as tmp:
        tmp.write_text(json.dumps(stats, indent=1, sort_keys=True, default=str))
    return stats


def is_plan_dir(path: Path) -> bool:
    return path.is_dir() and all((path / f).is_file() for f in PLAN_FILES)


def read_plan(path: Path) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    """(tiles, photos, stats) of a finished plan folder."""
    if not is_plan_dir(path):
        raise InputFileError(
            f"{str(path)!r} is not a finished GRAFT plan (needs {', '.join(PLAN_FILES)}); "
            "make one with `skyscript graft plan`."
        )
    stats = json.loads((path / "plan_stats.json").read_text())
    return pq.read_table(path / "tiles.parquet"), pq.read_table(path / "photos.parquet"), stats
