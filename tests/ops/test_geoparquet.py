"""objects.parquet and the cell/targeted plans are GeoParquet: geopandas opens them with the right CRS."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import geopandas as gpd
import pyarrow.parquet as pq
import shapely
from shapely.geometry import box

from pipeline.geo import BBox
from pipeline.osm.cells import read_cells, sample_cells, write_cells
from pipeline.osm.targeted import TargetedConfig, plan_targeted, read_targeted, write_targeted
from storage.objects_table import read_objects, write_objects
from tests.fakes import FakeArea


def _geo(path: Path) -> dict:
    return json.loads(pq.read_schema(path).metadata[b"geo"])


def test_objects_table_opens_in_geopandas(ops_area: FakeArea, tmp_path: Path) -> None:
    from pipeline.osm import make_osm_source

    objs = list(make_osm_source(str(ops_area.osm)).objects(None))
    path = tmp_path / "objects.parquet"
    write_objects(path, objs)
    gdf = gpd.read_parquet(path)
    assert gdf.crs is not None and gdf.crs.to_epsg() == 4326
    assert _geo(path)["columns"]["geometry"]["encoding"] == "WKB"
    assert len(gdf) == len(objs)
    for o, geom in zip(objs, gdf.geometry, strict=True):
        assert (geom is None and o.geometry is None) or shapely.equals_exact(geom, o.geometry, 1e-12)
    w, s, e, n = ops_area.bbox
    x0, y0, x1, y1 = gdf.total_bounds  # longitude first, as GeoParquet requires
    assert w - 1e-3 <= x0 <= x1 <= e + 1e-3 and s - 1e-3 <= y0 <= y1 <= n + 1e-3
    assert [o.key for o in read_objects(path)] == [o.key for o in objs]  # the toolkit still reads it


def test_cell_plan_opens_in_geopandas(tmp_path: Path) -> None:
    plan = sample_cells(40, 0.01, seed=3, land_only=False)
    path = tmp_path / "cells.parquet"
    write_cells(path, plan, seed=3)
    gdf = gpd.read_parquet(path)
    assert gdf.crs.to_epsg() == 4326 and len(gdf) == 40
    for row in gdf.itertuples():
        assert row.geometry.equals(box(row.west, row.south, row.east, row.north))
        assert abs(row.geometry.area - 0.01**2) < 1e-9
    meta = _geo(path)["columns"]["geometry"]
    assert meta["geometry_types"] == ["Polygon"] and len(meta["bbox"]) == 4
    assert pq.read_schema(path).metadata[b"seed"] == b"3"  # the plan's own metadata is kept
    assert read_cells(path).ix.tolist() == plan.ix.tolist()


def test_targeted_plan_opens_in_geopandas(tmp_path: Path) -> None:
    counts = Counter({("amenity", "fountain"): 5, ("power", "*"): 90})
    rows = plan_targeted(counts, [("amenity", "fountain"), ("power", None)], sampled_fraction=0.01,
                         region=BBox(20.0, 55.0, 30.0, 65.0), cfg=TargetedConfig(100, 50, keep_ocean=True))
    path = tmp_path / "targeted.parquet"
    write_targeted(path, rows)
    gdf = gpd.read_parquet(path)
    assert gdf.crs.to_epsg() == 4326 and len(gdf) == len(rows) > 0
    assert gdf.geometry.within(box(20.0, 55.0, 30.0, 65.0).buffer(1e-9)).all()
    assert {t.text for t in read_targeted(path)} == {"amenity=fountain", "power=*"}
    write_targeted(tmp_path / "empty.parquet", [])
    assert len(gpd.read_parquet(tmp_path / "empty.parquet")) == 0
