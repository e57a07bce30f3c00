"""Targeted stage: rare tags the random cells missed, planned as global, tiled queries.

A candidate tag (labelled or predicted groundable) is *rare* when the random stage saw it
on fewer than ``max_count`` objects. Each rare tag is queried over the region in tiles.
The tile size adapts to the expected number of objects: the count seen is scaled up by the
fraction of land the random cells covered, and tiles are made small enough that one query
stays under ``max_objects_per_query`` (Overpass fails a query that exceeds its
``[timeout:]``/``[maxsize:]`` rather than returning part of it). Tiles without land are
dropped unless ``keep_ocean``.
"""

from __future__ import annotations

import csv
import math
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import BadInputError, InputFileError
from pipeline.geo import BBox
from pipeline.osm.landmask import LandMask
from pipeline.osm.plan import WORLD, Target
from pipeline.osm.tags import parse_tag_specs, tag_spec_text
from storage.atomic import write_parquet
from storage.geoparquet import add_box_geometry

TILE_LADDER = (30.0, 15.0, 10.0, 5.0, 2.0, 1.0, 0.5, 0.25)
LAND_FRACTION = 0.29  # of the Earth's surface
EARTH_KM2 = 510.1e6
TARGET_COLUMNS = (
    "query_id",
    "tag",
    "key",
    "value",
    "count_seen",
    "expected",
    "tile_deg",
    "tx",
    "ty",
    "west",
    "south",
    "east",
    "north",
)


@dataclass(frozen=True)
class TargetedConfig:
    max_count: int = 100  # a tag seen on fewer objects than this is rare
    max_objects_per_query: int = 20_000
    keep_ocean: bool = False


def read_candidates(path: str | os.PathLike[str]) -> list[tuple[str, str | None]]:
    """Candidate tags: a CSV with a ``tag`` column (and optional ``groundable``: only yes/true/1
    rows are kept; e.g. ``tag_classifier/data/tag_labels.csv``) or a text file, one tag per line."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"candidate tag list not found: {str(p)!r}. Pass a CSV with a 'tag' column.")
    text = p.read_text(encoding="utf-8")
    lines = text.splitlines()
    if lines and "tag" in [c.strip() for c in lines[0].split(",")]:
        rows = list(csv.DictReader(lines))
        keep = [r for r in rows if str(r.get("groundable", "yes")).strip().lower() in ("yes", "true", "1")]
        items = [r["tag"].strip() for r in keep if r.get("tag")]
    else:
        items = [ln.split("#", 1)[0].strip() for ln in lines]
    items = [t for t in items if t and "*" not in t.split("=", 1)[0]]  # key patterns are not queryable
    if not items:
        raise BadInputError(f"no candidate tags in {str(p)!r}: one key=value per line, or a CSV 'tag' column")
    seen: dict[tuple[str, str | None], None] = {}
    for spec in parse_tag_specs(items):
        seen.setdefault(spec, None)
    return list(seen)


def sampled_land_fraction(n_cells: int, cell_deg: float, mean_lat: float = 30.0) -> float:
    """Share of the world's land that ``n_cells`` random land cells covered."""
    km = 111.32 * cell_deg
    cell_km2 = km * km * math.cos(math.radians(mean_lat))
    return min(1.0, n_cells * cell_km2 / (EARTH_KM2 * LAND_FRACTION))


def choose_tile_deg(expected: float, region: BBox, cfg: TargetedConfig) -> float:
    """Largest tile from the ladder where the expected objects per tile fit one query."""
    area_share = _area_share(region)
    for deg in TILE_LADDER:
        tiles = max(1.0, area_share * (180.0 / deg) * (360.0 / deg))
        if expected / tiles <= cfg.max_objects_per_query:
            return deg
    return TILE_LADDER[-1]


def _area_share(b: BBox) -> float:
    return (b.east - b.west) / 360.0 * (math.sin(math.radians(b.north)) - math.sin(math.radians(b.south))) / 2.0


def land_tiles(region: BBox, deg: float, land: LandMask | None, keep_ocean: bool) -> list[tuple[int, int]]:
    x0, x1 = math.floor(region.west / deg), math.ceil(region.east / deg) - 1
    y0, y1 = math.floor(region.south / deg), math.ceil(region.north / deg) - 1
    tiles = [(i, j) for j in range(y0, max(y0, y1) + 1) for i in range(x0, max(x0, x1) + 1)]
    if keep_ocean or land is None:
        return tiles
    return [(i, j) for i, j in tiles if land.any_land(i * deg, j * deg, (i + 1) * deg, (j + 1) * deg)]


def plan_targeted(
    counts: Counter[tuple[str, str]],
    candidates: Iterable[tuple[str, str | None]],
    sampled_fraction: float,
    region: BBox | None = None,
    cfg: TargetedConfig | None = None,
    land: LandMask | None = None,
) -> list[dict]:
    """Rows of the targeted plan: one per (rare tag, tile)."""
    cfg = cfg or TargetedConfig()
    if not 0 < sampled_fraction <= 1:
        raise BadInputError(f"sampled land fraction must be in (0, 1], got {sampled_fraction}")
    region = region or WORLD
    land = land if (land is not None or cfg.keep_ocean) else LandMask()
    rows: list[dict] = []
    tile_cache: dict[float, list[tuple[int, int]]] = {}
    for key, value in candidates:
        seen = counts.get((key, "*" if value is None else value), 0)
        if seen >= cfg.max_count:
            continue
        expected = max(seen, 1) / sampled_fraction
        deg = choose_tile_deg(expected, region, cfg)
        if deg not in tile_cache:
            tile_cache[deg] = land_tiles(region, deg, land, cfg.keep_ocean)
        for tx, ty in tile_cache[deg]:
            w, s = max(tx * deg, region.west), max(ty * deg, region.south)
            e, n = min((tx + 1) * deg, region.east), min((ty + 1) * deg, region.north)
            rows.append(
                {
                    "query_id": len(rows),
                    "tag": tag_spec_text(key, value),
                    "key": key,
                    "value": value,
                    "count_seen": seen,
                    "expected": expected,
                    "tile_deg": deg,
                    "tx": tx,
                    "ty": ty,
                    "west": w,
                    "south": s,
                    "east": e,
                    "north": n,
                }
            )
    return rows


def write_targeted(path: str | os.PathLike[str], rows: list[dict]) -> int:
    table = pa.Table.from_pylist(rows, schema=_schema()) if rows else _schema().empty_table()
    return write_parquet(add_box_geometry(table), path)  # GeoParquet: query tiles open in geopandas/QGIS


def _schema() -> pa.Schema:
    types = {
        "query_id": pa.int64(),
        "count_seen": pa.int64(),
        "tx": pa.int64(),
        "ty": pa.int64(),
        "tag": pa.string(),
        "key": pa.string(),
        "value": pa.string(),
    }
    return pa.schema([(c, types.get(c, pa.float64())) for c in TARGET_COLUMNS])


def read_targeted(path: str | os.PathLike[str]) -> tuple[Target, ...]:
    """Targets (tag + tile set) from a plan written by :func:`write_targeted`."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"targeted plan not found: {str(p)!r}. Make one with `skyscript plan targeted`.")
    try:
        table = pq.read_table(p, columns=["key", "value", "tile_deg", "tx", "ty"])
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise InputFileError(f"{str(p)!r} is not a targeted plan parquet: {exc}") from exc
    groups: dict[tuple[str, str | None, float], set[tuple[int, int]]] = {}
    for r in table.to_pylist():
        groups.setdefault((r["key"], r["value"], r["tile_deg"]), set()).add((r["tx"], r["ty"]))
    return tuple(Target(k, v, d, frozenset(t)) for (k, v, d), t in groups.items())
