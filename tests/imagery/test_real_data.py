"""Real imagery from ../shared/data: OAM orthophotos with real OSM buildings, Sentinel-2 patches.

Skipped (with the reason) when the shared data folder is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform as warp
from shapely.geometry import Point, box, shape

from pipeline.chips import plan_for_source
from pipeline.config import PlannerConfig
from pipeline.imagery import make_imagery_source
from pipeline.imagery.local import LocalRasterSource
from pipeline.records import ChipRequest, OsmObject

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def oam(shared_data: Path) -> LocalRasterSource:
    src = make_imagery_source(f"local:{shared_data / 'imagery' / 'oam'}")
    assert isinstance(src, LocalRasterSource)
    return src


@pytest.fixture(scope="module")
def s2(shared_data: Path) -> LocalRasterSource:
    return LocalRasterSource(shared_data / "imagery" / "sentinel2")


def buildings(shared_data: Path, area: int) -> list[OsmObject]:
    gj = json.loads((shared_data / "imagery" / "oam" / f"area{area}_labels.geojson").read_text())
    # The labels' osm_id is often null; the feature order is stable, so number them.
    return [OsmObject("way", i + 1, {"building": "yes"}, shape(f["geometry"])) for i, f in enumerate(gj["features"])]


def test_oam_index_ground_gsd(oam: LocalRasterSource) -> None:
    by_id = {r.image_id: r for r in oam.rasters}
    assert len(by_id) == 12 and oam.describe()["skipped"] == []
    z21 = by_id["area2_block0_z21.tif"]  # Kampala, lat 0.35°: ground ≈ projected
    assert z21.native_gsd == pytest.approx(0.0746, abs=2e-4)
    z21_zanzibar = by_id["area1_block0_z21.tif"]  # lat ≈ -6°: cos shrinks it
    assert z21_zanzibar.native_gsd < z21.native_gsd - 3e-4
    assert by_id["area2_block0_z19.tif"].native_gsd == pytest.approx(4 * z21.native_gsd, rel=1e-6)


def test_chips_around_real_buildings(oam: LocalRasterSource, shared_data: Path) -> None:
    cfg = PlannerConfig()
    objs = buildings(shared_data, 2)
    planned = [(o, plan_for_source(o, oam, cfg, seed=0)) for o in objs[:60]]
    reqs = [(o, r) for o, r in planned if isinstance(r, ChipRequest)]
    fails = [r for _o, r in planned if isinstance(r, str)]
    assert len(reqs) >= 30
    # Failures are buildings the mosaics only partly cover (or cover with nodata pixels), and say so.
    assert all(f.code in ("no_imagery", "nodata") for f in fails)
    assert all(f == "no imagery covers this object (source local)" for f in fails if f.code == "no_imagery")
    # The finest raster is chosen wherever its valid-data area holds the tile (near a mosaic's ragged
    # edge only the coarser one may).
    assert sum(r.image_id.endswith("_z21.tif") for _o, r in reqs) >= 0.8 * len(reqs)
    for o, req in reqs[:25]:
        assert box(*req.bbox).covers(o.geometry), o.key
        chip = oam.read(req)
        assert chip.pixels.shape == (req.height, req.width, 3) and chip.pixels.dtype == np.uint8
        assert chip.provenance["empty_fraction"] < 0.01  # a few pure-black pixels at most (shadows, edges)
        assert chip.pixels.mean() > 20 and chip.pixels.std() > 5  # real imagery, not black or flat
        col, row, w, h = chip.provenance["src_window"]
        info = next(r for r in oam.rasters if r.image_id == req.image_id)
        assert w * h < info.width * info.height / 4  # windowed, not the whole mosaic
        assert col >= 0 and row >= 0 and col + w <= info.width and row + h <= info.height


def test_chip_pixels_match_the_source_raster(oam: LocalRasterSource, shared_data: Path) -> None:
    """At (nearly) native GSD the chip centre equals the raster pixel under it."""
    o = next(
        b for b in buildings(shared_data, 2) if isinstance(plan_for_source(b, oam, PlannerConfig(), 0), ChipRequest)
    )
    req = plan_for_source(o, oam, PlannerConfig(jitter=False), 0)
    assert isinstance(req, ChipRequest)
    chip = oam.read(req)
    c = o.geometry.centroid
    with rasterio.open(Path(oam.root) / req.image_id) as ds:
        xs, ys = warp("EPSG:4326", ds.crs, [c.x], [c.y])
        row, col = ds.index(xs[0], ys[0])
        ref = ds.read(window=((row - 2, row + 3), (col - 2, col + 3))).reshape(3, -1).mean(axis=1)
    got = chip.pixels[req.height // 2 - 2 : req.height // 2 + 3, req.width // 2 - 2 : req.width // 2 + 3]
    assert np.abs(got.reshape(-1, 3).mean(axis=0) - ref).max() < 25


def test_sentinel2_patch_reads_true_colour(s2: LocalRasterSource) -> None:
    info = next(r for r in s2.rasters if r.image_id == "example_s2_patch_445.tif")
    assert info.native_gsd == 10.0 and info.bands.indexes == (4, 3, 2)
    assert info.bands.rule == "sentinel2-default" and info.stretch == "reflectance"
    centre = info.footprint.centroid
    o = OsmObject("node", 1, {"natural": "peak"}, Point(centre.x, centre.y))
    req = plan_for_source(o, s2, PlannerConfig(tile_px_min=64, tile_px_max=128), 0)
    assert isinstance(req, ChipRequest) and req.gsd == 10.0
    chip = s2.read(req)
    assert chip.provenance["stretch"] == "reflectance/3000" and chip.provenance["empty_fraction"] == 0.0
    assert chip.pixels.mean() > 20 and chip.pixels.std() > 3


def test_float_wgs84_cog(s2: LocalRasterSource) -> None:
    info = next(r for r in s2.rasters if r.image_id == "s2_cog_eemshaven.tif")
    assert info.crs == "EPSG:4326" and 9.9 < info.native_gsd < 10.1  # 8.98e-5° north-south
    c = info.footprint.centroid
    req = plan_for_source(
        OsmObject("node", 2, {}, Point(c.x, c.y)), s2, PlannerConfig(tile_px_min=64, tile_px_max=128), 0
    )
    assert isinstance(req, ChipRequest)
    chip = s2.read(req)
    assert chip.provenance["stretch"] == "reflectance/3000"  # floats in DN units, not 0–1
    assert chip.provenance["empty_fraction"] == 0.0 and chip.pixels.std() > 3
    # The raster is ~2.05 km across: a 224 px tile at 10 m (2.24 km) cannot fit inside it.
    reason = plan_for_source(OsmObject("node", 2, {}, Point(c.x, c.y)), s2, PlannerConfig(tile_px_min=224), 0)
    assert isinstance(reason, str) and "too close to the edge of the imagery" in reason
