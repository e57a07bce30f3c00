"""objects.parquet and the cell/targeted plans are GeoParquet: geopandas opens them with the right CRS."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import geopandas as gpd
import pyarrow.parquet as pq
import pytest
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


def test_imagery_plan_and_graft_tables_open_in_geopandas(tmp_path: Path) -> None:
    """The chip plan and the GRAFT tile/photo plans are GeoParquet too (WGS84 footprints, points)."""
    import geopandas as gpd
    from shapely.geometry import Point

    from pipeline.graft.photos import PhotoTable, load_photo_table
    from pipeline.graft.plan import write_plan as write_graft_plan
    from pipeline.graft.tiling import TilingConfig, plan_tiles
    from pipeline.imagery.plan import write_plan

    rows = [
        {"key": "w1", "osm_type": "way", "osm_id": 1, "source": "local", "collection": "local", "gsd": 0.3,
         "crs": "EPSG:32636", "transform": [0.3, 0.0, 0.0, 0.0, -0.3, 0.0], "width": 224, "height": 224,
         "bbox": [32.58, 0.32, 32.581, 0.321], "max_gsd": 1.0, "status": "ok", "error_message": ""},
        {"key": "w2", "osm_type": "way", "osm_id": 2, "source": None, "collection": None, "gsd": None,
         "crs": None, "transform": None, "width": None, "height": None, "bbox": None, "max_gsd": None,
         "status": "failed", "error_message": "no imagery"},
    ]
    write_plan(tmp_path / "plan.parquet", rows)
    gdf = gpd.read_parquet(tmp_path / "plan.parquet")
    assert gdf.crs.to_epsg() == 4326 and gdf.geometry.iloc[0].bounds == pytest.approx((32.58, 0.32, 32.581, 0.321))
    assert gdf.geometry.iloc[1] is None

    csv = tmp_path / "photos.csv"
    csv.write_text("id,lat,lon,taken\n1,60.17,24.94,2020-06-01\n2,60.1701,24.9402,2020-06-02\n3,-33.9,18.4,2021-01-05\n")
    table: PhotoTable = load_photo_table(csv)
    plan = plan_tiles(table.photos, TilingConfig(gsd=1.0, tile_px=224, seed=0))
    write_graft_plan(tmp_path / "g", plan, table, TilingConfig(gsd=1.0, tile_px=224, seed=0), {"kind": "test"})
    tiles = gpd.read_parquet(tmp_path / "g" / "tiles.parquet")
    photos = gpd.read_parquet(tmp_path / "g" / "photos.parquet")
    assert tiles.crs.to_epsg() == 4326 and photos.crs.to_epsg() == 4326
    for _, p in photos.iterrows():
        tile = tiles[tiles.tile_id == p.tile_id].geometry.iloc[0]
        assert tile.buffer(1e-9).contains(Point(p.lon, p.lat)) and p.geometry.equals(Point(p.lon, p.lat))
