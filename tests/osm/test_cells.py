"""Random cell plans: on land, area-uniform, deterministic, region-restricted, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely
from scipy import stats

from pipeline.errors import BadInputError, InputFileError
from pipeline.geo import BBox
from pipeline.osm.cells import read_cells, sample_cells, write_cells
from pipeline.osm.landmask import LandMask, iter_mask_rows


@pytest.fixture(scope="module")
def land() -> LandMask:
    return LandMask()


def centres(plan) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    d = plan.cell_deg
    return (plan.ix + 0.5) * d, (plan.iy + 0.5) * d


def test_packed_mask_matches_the_package_grid(land: LandMask) -> None:
    rng = np.random.default_rng(0)
    for start, rows, (_n, n_cols) in iter_mask_rows(chunk_rows=400):
        if start >= 2400:  # 90°N to 70°N: Greenland, Svalbard, the Arctic islands and sea
            break
        i = rng.integers(0, len(rows), 4000)
        j = rng.integers(0, n_cols, 4000)
        lat = land.lat0 + (start + i + 0.5) * land.dlat
        lon = land.lon0 + (j + 0.5) * land.dlon
        assert np.array_equal(land.is_ocean(lat, lon), rows[i, j])
    assert 0.01 < (~rows).mean() < 0.99  # the rows checked hold both land and sea


def test_known_places(land: LandMask) -> None:
    assert land.is_land([60.17, 23.0, -75.0], [24.94, 10.0, 0.0]).all()  # Helsinki, Sahara, Antarctica
    assert not land.is_land([30.0, 0.0], [-40.0, -150.0]).any()  # mid-Atlantic, Pacific


def test_cells_are_on_land_distinct_and_deterministic(land: LandMask) -> None:
    a = sample_cells(3000, 0.01, seed=5, land=land)
    b = sample_cells(3000, 0.01, seed=5, land=land)
    c = sample_cells(3000, 0.01, seed=6, land=land)
    assert np.array_equal(a.ix, b.ix) and np.array_equal(a.iy, b.iy)
    assert not np.array_equal(a.ix, c.ix)
    assert len(set(a.pairs())) == 3000
    lon, lat = centres(a)
    assert land.is_land(lat, lon).all()


def test_area_uniform_without_land_mask() -> None:
    plan = sample_cells(5000, 0.01, seed=1, land_only=False)
    _, lat = centres(plan)
    assert stats.kstest(np.sin(np.radians(lat)), "uniform", args=(-1, 2)).pvalue > 1e-3
    # The test has power: a uniform lat/lon box (over-sampling the poles) fails it.
    naive = np.random.default_rng(1).uniform(-90, 90, 5000)
    assert stats.kstest(np.sin(np.radians(naive)), "uniform", args=(-1, 2)).pvalue < 1e-6


def test_land_cells_follow_land_area_by_latitude(land: LandMask) -> None:
    plan = sample_cells(4000, 0.01, seed=2, land=land)
    _, lat = centres(plan)
    edges = np.arange(-90, 91, 15)
    # Expected share per band: land area on a regular 0.25° grid, cos(lat)-weighted.
    glat, glon = np.meshgrid(np.arange(-89.875, 90, 0.25), np.arange(-179.875, 180, 0.25), indexing="ij")
    weight = np.cos(np.radians(glat)) * land.is_land(glat.ravel(), glon.ravel()).reshape(glat.shape)
    expected = np.histogram(glat.ravel(), edges, weights=weight.ravel())[0]
    observed = np.histogram(lat, edges)[0]
    keep = expected > 0
    exp = expected[keep] / expected.sum() * len(lat)
    assert stats.chisquare(observed[keep], exp).pvalue > 1e-3


def test_region_restriction(land: LandMask) -> None:
    box = BBox(20.0, 60.0, 30.0, 65.0)
    lon, lat = centres(sample_cells(500, 0.01, seed=3, region=box, land=land))
    assert ((lon >= 20) & (lon <= 30) & (lat >= 60) & (lat <= 65)).all()
    poly = shapely.Polygon([(20, 60), (30, 60), (20, 65)])
    lon, lat = centres(sample_cells(300, 0.01, seed=3, region=poly, land=land))
    assert shapely.contains_xy(poly, lon, lat).all()


def test_bad_plans_fail_clearly(land: LandMask) -> None:
    with pytest.raises(BadInputError, match="holds only 0 land cells"):
        sample_cells(10, 0.01, region=BBox(-40, 30, -39.9, 30.1), land=land)  # open ocean
    with pytest.raises(BadInputError, match="cell-deg"):
        sample_cells(10, 0.0)
    with pytest.raises(BadInputError, match="at least 1"):
        sample_cells(0)
    with pytest.raises(BadInputError, match="polygon"):
        sample_cells(5, region=shapely.LineString([(0, 0), (1, 1)]), land=land)


def test_cells_file_round_trip(tmp_path: Path, land: LandMask) -> None:
    plan = sample_cells(50, 0.01, seed=4, land=land)
    assert write_cells(tmp_path / "cells.parquet", plan, seed=4) == 50
    back = read_cells(tmp_path / "cells.parquet")
    assert back.pairs() == plan.pairs() and back.cell_deg == 0.01
    with pytest.raises(InputFileError, match="not found"):
        read_cells(tmp_path / "missing.parquet")
    (tmp_path / "junk.parquet").write_text("junk")
    with pytest.raises(InputFileError, match="junk"):
        read_cells(tmp_path / "junk.parquet")
