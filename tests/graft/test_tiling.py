"""Tiling properties on real photo locations and on synthetic clusters at hard places."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from pyproj import Geod

from pipeline.graft.photos import ColumnSpec, GroundPhoto, load_photo_table
from pipeline.graft.tiling import TilingConfig, plan_tiles, quarter_of
from tests.graft.checks import check_plan


def _rows(plan):
    tiles = [
        {"tile_id": t.tile_id, "lon": t.lon, "lat": t.lat, "crs": t.crs, "transform": list(t.transform),
         "width": t.width, "height": t.height, "n_photos": t.n_photos, "group": t.group}
        for t in plan.tiles
    ]
    photos = [{"photo_id": a.photo.photo_id, "tile_id": a.tile_id, "lon": a.photo.lon, "lat": a.photo.lat,
               "px_x": a.px_x, "px_y": a.px_y} for a in plan.assignments]
    return tiles, photos


def cluster(lon: float, lat: float, n: int, spread_m: float, seed: int, dated: bool = True) -> list[GroundPhoto]:
    """``n`` photos scattered within ``spread_m`` metres of a point (geodesic, so true metres anywhere)."""
    rng = np.random.default_rng(seed)
    g = Geod(ellps="WGS84")
    az = rng.uniform(0, 360, n)
    dist = rng.uniform(0, spread_m, n)
    lons, lats, _ = g.fwd(np.full(n, lon), np.full(n, lat), az, dist)
    lons = (np.asarray(lons) + 180.0) % 360.0 - 180.0
    months = rng.integers(1, 4, n)
    return [GroundPhoto(f"p{seed}_{i}", float(a), float(b), f"2020-{m:02d}-15T12:00:00" if dated else None)
            for i, (a, b, m) in enumerate(zip(lons, lats, months, strict=True))]


@pytest.mark.slow
def test_real_photo_locations(shared_data: Path) -> None:
    table = load_photo_table(shared_data / "ground_photos" / "im2gps3k_places365.csv")
    assert table.columns["id"] == "IMG_ID" and table.columns["indoor"] == "Prob_indoor"
    # Real locations are heavily clustered (many photos share one coordinate): the cap bites.
    for gsd, px in ((1.0, 224), (10.0, 224), (10.0, 64)):
        plan = plan_tiles(table.photos, TilingConfig(gsd=gsd, tile_px=px, seed=3))
        tiles, photos = _rows(plan)
        check_plan(tiles, photos, px, gsd)
        assert len(photos) + plan.stats["over_cap"] == len(table.photos)
        assert max(t["n_photos"] for t in tiles) == 25 and plan.stats["over_cap"] > 0
        if gsd == 10.0 and px == 224:  # the KD-tree agrees with brute force (once: it is slow)
            brute = plan_tiles(table.photos, TilingConfig(gsd=gsd, tile_px=px, seed=3), brute_force=True)
            assert _rows(brute) == (tiles, photos)


def test_deterministic_per_seed_and_input_order() -> None:
    photos = cluster(2.35, 48.85, 400, 3000, seed=1) + cluster(2.40, 48.87, 100, 500, seed=2)
    cfg = TilingConfig(gsd=1.0, tile_px=224, seed=7)
    a = _rows(plan_tiles(photos, cfg))
    b = _rows(plan_tiles(list(reversed(photos)), cfg))
    assert a == b
    c = _rows(plan_tiles(photos, TilingConfig(gsd=1.0, tile_px=224, seed=8)))
    assert a != c
    check_plan(*a, 224, 1.0)
    check_plan(*c, 224, 1.0)


@pytest.mark.parametrize(
    ("lon", "lat"),
    [(15.6, 78.2), (-45.0, 83.9), (100.0, 89.5), (10.0, -75.0), (179.9995, -16.5), (-179.9995, 65.0), (0.0005, 51.5),
     (12.0, 47.0)],  # the last straddles the UTM 32/33 border inside one 10° cell
)
def test_hard_places(lon: float, lat: float) -> None:
    photos = cluster(lon, lat, 300, 600, seed=5)
    cfg = TilingConfig(gsd=1.0, tile_px=100, seed=0, max_per_tile=25)
    plan = plan_tiles(photos, cfg)
    tiles, rows = _rows(plan)
    check_plan(tiles, rows, 100, 1.0)
    assert _rows(plan_tiles(photos, cfg, brute_force=True)) == (tiles, rows)  # the KD-tree misses no one
    # Tiles are true-metre squares: the geodesic length of a tile edge is tile_px * gsd (UTM scale ≤ 0.1 %).
    from affine import Affine
    from pyproj import Transformer

    t = tiles[0]
    inv = Transformer.from_crs(t["crs"], "EPSG:4326", always_xy=True)
    tr = Affine(*t["transform"])
    (x0, y0), (x1, y1) = tr * (0, 0), tr * (100, 0)
    (lo0, la0), (lo1, la1) = inv.transform(x0, y0), inv.transform(x1, y1)
    _, _, edge = Geod(ellps="WGS84").inv(lo0, la0, lo1, la1)
    assert edge == pytest.approx(100.0, rel=2e-3)


def test_antimeridian_photos_never_share_a_tile() -> None:
    east = cluster(179.9999, 0.5, 50, 80, seed=1)
    west = cluster(-179.9999, 0.5, 50, 80, seed=2)
    plan = plan_tiles(east + west, TilingConfig(gsd=1.0, tile_px=224))
    tiles, rows = _rows(plan)
    check_plan(tiles, rows, 224, 1.0)
    by_tile: dict[str, set[bool]] = {}
    for r in rows:
        by_tile.setdefault(r["tile_id"], set()).add(r["lon"] > 0)
    assert all(len(v) == 1 for v in by_tile.values())


def test_cap_groups_dates_and_median() -> None:
    photos = [GroundPhoto(f"a{i}", 10.0 + i * 1e-6, 45.0, f"2021-0{1 + i % 3}-0{1 + i % 9}T00:00:00")
              for i in range(60)]
    photos += [GroundPhoto(f"b{i}", 10.0 + i * 1e-6, 45.0, "2021-07-10T00:00:00") for i in range(3)]
    photos += [GroundPhoto(f"u{i}", 10.0 + i * 1e-6, 45.0, None) for i in range(4)]
    plan = plan_tiles(photos, TilingConfig(gsd=1.0, tile_px=224, seed=0))
    groups = {t.group: t for t in plan.tiles}
    assert set(groups) == {"E010N40_2021Q1", "E010N40_2021Q3", "E010N40_undated"}
    assert groups["E010N40_2021Q1"].n_photos == 25 and plan.stats["over_cap"] == 35
    assert groups["E010N40_2021Q3"].date == "2021-07-10"
    assert groups["E010N40_undated"].date is None and groups["E010N40_undated"].n_photos == 4
    q1 = [a.photo.date for a in plan.assignments if a.tile_id == groups["E010N40_2021Q1"].tile_id]
    secs = sorted(pd.Timestamp(d).value for d in q1)
    assert groups["E010N40_2021Q1"].date == pd.Timestamp(int(np.median(secs))).strftime("%Y-%m-%d")
    assert quarter_of("2020-12-31T23:59:59") == "2020Q4" and quarter_of(None) == "undated"


def test_split_is_spatially_blocked() -> None:
    photos = cluster(5.0, 52.0, 2000, 40000, seed=4)
    plan = plan_tiles(photos, TilingConfig(gsd=10.0, tile_px=64, test_fraction=0.3, split_block_deg=0.1))
    blocks: dict[tuple[int, int], set[str]] = {}
    for t in plan.tiles:
        blocks.setdefault((int(np.floor(t.lat / 0.1)), int(np.floor(t.lon / 0.1))), set()).add(t.split)
    assert all(len(s) == 1 for s in blocks.values())
    assert {"train", "test"} <= {t.split for t in plan.tiles}


def test_plan_files_roundtrip(tmp_path: Path) -> None:
    from pipeline.graft.photos import PhotoTable
    from pipeline.graft.plan import read_plan, write_plan

    photos = cluster(24.94, 60.17, 80, 400, seed=9)
    cfg = TilingConfig(gsd=0.5, tile_px=128)
    plan = plan_tiles(photos, cfg)
    write_plan(tmp_path, plan, PhotoTable(photos, rows_in=80), cfg, {"name": "test"})
    tiles, rows, stats = read_plan(tmp_path)
    need = {"tile_id", "lon", "lat", "crs", "transform", "width", "height", "date", "n_photos"}
    assert need <= set(tiles.column_names)
    assert {"photo_id", "tile_id", "lon", "lat", "date", "px_x", "px_y"} <= set(rows.column_names)
    check_plan(tiles.to_pylist(), rows.to_pylist(), 128, 0.5)
    assert stats["tiles"] == tiles.num_rows and pq.read_table(tmp_path / "photos_rejected.parquet").num_rows == 0
    _ = ColumnSpec  # re-exported for the CLI tests
