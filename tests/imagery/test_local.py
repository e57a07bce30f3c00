"""LocalRasterSource on tiny synthetic rasters: index, coverage, windowed reads, bands, bad files."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Geod, Transformer
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin
from shapely.geometry import LineString, Point, box

from pipeline.errors import BadInputError, ImageryError, InputFileError
from pipeline.geo import utm_epsg
from pipeline.imagery import make_imagery_source
from pipeline.imagery.local import LocalRasterSource
from pipeline.records import ChipRequest
from pipeline.seams import ImagerySource
from tests.imagery import synth


def grid_request(lon: float, lat: float, gsd: float, px: int, image_id: str = "", key: str = "n1") -> ChipRequest:
    """A north-up UTM request of ``px`` square pixels centred on (lon, lat)."""
    crs = f"EPSG:{utm_epsg(lon, lat)}"
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    half = px * gsd / 2.0
    bounds = (x - half, y - half, x + half, y + half)
    bbox = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform_bounds(*bounds, densify_pts=21)
    return ChipRequest(key, "node", 1, tuple(bbox), crs, bounds, px, px, gsd, "local", 0, image_id)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    synth.merc_rgb(tmp_path)
    synth.utm_grey(tmp_path)
    synth.wgs84_float(tmp_path)
    (tmp_path / "sub").mkdir()
    synth.s2_stack(tmp_path / "sub")
    return tmp_path


@pytest.fixture()
def source(folder: Path) -> LocalRasterSource:
    return LocalRasterSource(folder)


def test_implements_protocol_and_describe_is_json(source: LocalRasterSource) -> None:
    assert isinstance(source, ImagerySource)
    assert source.name == "local"
    desc = json.loads(json.dumps(source.describe()))
    assert desc["rasters"] == 4 and desc["skipped"] == []
    assert sorted(f["image_id"] for f in desc["files"]) == [
        "merc_rgb.tif",
        "sub/s2.tif",
        "utm_grey.tif",
        "wgs84_float.tif",
    ]


def test_native_gsd_is_ground_metres(source: LocalRasterSource) -> None:
    gsd = {r.image_id: r.native_gsd for r in source.rasters}
    # Web Mercator: projected size times cos(lat) at the centre.
    assert gsd["merc_rgb.tif"] == pytest.approx(synth.MERC_RES * math.cos(math.radians(synth.MERC_LAT)), rel=1e-4)
    assert gsd["utm_grey.tif"] == pytest.approx(10.0)  # projected metric CRS: as is
    # Geographic: 1e-4° measured on the ellipsoid; the coarser (north-south) axis.
    lat = 53.42 - 30 * 1e-4
    ns = Geod(ellps="WGS84").inv(6.864, lat, 6.864, lat + 1e-4)[2]
    assert gsd["wgs84_float.tif"] == pytest.approx(ns, rel=1e-3)
    assert 11.0 < gsd["wgs84_float.tif"] < 11.2


def test_coverage_finest_first_and_only_full_cover(tmp_path: Path) -> None:
    synth.merc_rgb(tmp_path, "big.tif")
    (tmp_path / "a").mkdir()
    synth.merc_rgb(tmp_path / "a", "small.tif", size=128)  # same centre and GSD, a quarter of the extent
    src = LocalRasterSource(tmp_path)
    # Same GSD, so the tie breaks by image_id; both cover the centre.
    centre = Point(synth.MERC_LON, synth.MERC_LAT)
    assert [c.image_id for c in src.coverage(centre)] == ["a/small.tif", "big.tif"]
    # A line leaving the small raster but not the big one is covered by the big one only.
    fp_small = src.footprint("a/small.tif")
    assert fp_small is not None
    w, _s, e, _n = fp_small.bounds
    line = LineString([(synth.MERC_LON, synth.MERC_LAT), (e + (e - w) * 0.2, synth.MERC_LAT)])
    assert [c.image_id for c in src.coverage(line)] == ["big.tif"]
    assert src.coverage(Point(0.0, 0.0)) == []
    cov = src.coverage(centre)[0]
    assert cov.collection == "local" and cov.crs == "EPSG:3857" and cov.acquired == "2021-06-15"


def test_coverage_sorts_by_ground_gsd(folder: Path) -> None:
    synth.write_raster(
        folder / "merc_coarse.tif", np.full((3, 64, 64), 90, np.uint8), "EPSG:3857", _merc_transform(64, 1.6)
    )
    src = LocalRasterSource(folder)
    ids = [c.image_id for c in src.coverage(Point(synth.MERC_LON, synth.MERC_LAT))]
    assert ids == ["merc_rgb.tif", "merc_coarse.tif"]
    gsds = [c.native_gsd for c in src.coverage(Point(synth.MERC_LON, synth.MERC_LAT))]
    assert gsds == sorted(gsds)


def _merc_transform(size: int, res: float) -> Affine:

    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(synth.MERC_LON, synth.MERC_LAT)
    return from_origin(x - size * res / 2, y + size * res / 2, res, res)


def test_read_rgb_marker_lands_at_chip_centre(source: LocalRasterSource) -> None:
    req = grid_request(synth.MERC_LON, synth.MERC_LAT, gsd=0.1, px=64)
    chip = source.read(req)
    assert chip.pixels.shape == (64, 64, 3) and chip.pixels.dtype == np.uint8
    assert chip.width == 64 and chip.height == 64 and chip.crs == req.crs
    r, g, b = (int(v) for v in chip.pixels[32, 32])
    assert r > 200 and g < 40 and b < 40, chip.pixels[32, 32]
    corner = chip.pixels[2, 2]
    assert 50 <= int(corner[0]) <= 130 and int(corner[1]) >= 50  # noise, not the marker
    p = chip.provenance
    assert p["file"] == "merc_rgb.tif" and p["native_crs"] == "EPSG:3857"
    assert p["bands"] == [1, 2, 3] and p["band_rule"] == "colorinterp" and p["stretch"] == "none"
    assert p["empty_fraction"] == 0.0
    assert chip.source == "local" and chip.image_id == "merc_rgb.tif" and chip.acquired == "2021-06-15"
    assert chip.native_gsd == pytest.approx(p["native_gsd"])
    # Windowed: the 6.4 m chip reads ~ (6.4 / 0.2)·√2 source pixels per side, not the 512-px file.
    _col, _row, w, h = p["src_window"]
    assert 0 < w < 100 and 0 < h < 100


def test_read_coarse_request_decimates_the_window(source: LocalRasterSource) -> None:
    req = grid_request(synth.MERC_LON, synth.MERC_LAT, gsd=0.8, px=32)  # 8x the native GSD
    chip = source.read(req)
    assert chip.pixels.shape == (32, 32, 3)
    assert chip.provenance["empty_fraction"] == 0.0
    r, g, _b = (int(v) for v in chip.pixels[16, 16])
    assert r > g + 60  # the marker survives averaging


def test_read_single_band_grey_with_nodata(source: LocalRasterSource) -> None:
    lon, lat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform(500000 + 200, 6000000 - 500)
    req = grid_request(lon, lat, gsd=10.0, px=30, image_id="utm_grey.tif")
    chip = source.read(req)
    px = chip.pixels
    assert np.array_equal(px[..., 0], px[..., 1]) and np.array_equal(px[..., 1], px[..., 2])
    p = chip.provenance
    assert p["band_rule"] == "grey" and p["stretch"].startswith("percentile2-98")
    # The raster's no-data strip (x < 500200) fills the left half of the chip.
    assert 0.35 < p["empty_fraction"] < 0.65
    assert px[:, :10].max() == 0 and px[:, 20:].max() > 100


def test_read_float_reflectance_stretch(source: LocalRasterSource) -> None:
    chip = source.read(grid_request(6.864, 53.417, gsd=12.0, px=16))
    assert chip.image_id == "wgs84_float.tif"
    assert chip.provenance["stretch"] == "reflectance/0.3"
    assert chip.provenance["band_rule"] == "first-three"
    assert np.all(np.abs(chip.pixels.astype(int) - round(0.15 / 0.3 * 255)) <= 1)


def test_sentinel2_default_bands(source: LocalRasterSource) -> None:
    lon, lat = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True).transform(400320, 5899680)
    chip = source.read(grid_request(lon, lat, gsd=10.0, px=16, image_id="sub/s2.tif"))
    p = chip.provenance
    assert p["bands"] == [4, 3, 2] and p["band_rule"] == "sentinel2-default"
    assert p["stretch"] == "reflectance/3000"
    expected = [round(v / 3000 * 255) for v in (400, 300, 200)]  # band k holds 100·k
    assert np.all(np.abs(chip.pixels.reshape(-1, 3).astype(int) - expected) <= 1)


def test_bands_from_descriptions(tmp_path: Path) -> None:
    names = ["B8", "B11", "B03", "Red", "B02", "B05", "B06", "B07", "B08", "B09", "B8A", "B12"]
    synth.s2_stack(tmp_path, descriptions=names)
    src = LocalRasterSource(tmp_path)
    plan = src.rasters[0].bands
    assert plan.rule == "descriptions" and plan.indexes == (4, 3, 5)
    assert plan.names == ("Red", "B03", "B02")


def test_bands_override_and_invalid_override(folder: Path) -> None:
    src = LocalRasterSource(folder / "sub", bands=(8, 4, 3))
    assert src.rasters[0].bands.indexes == (8, 4, 3) and src.rasters[0].bands.rule == "override"
    # A wrong override is the caller's mistake, not a bad file: it raises even when not strict.
    with pytest.raises(BadInputError, match=r"three 1-based band indexes within 1\.\.12"):
        LocalRasterSource(folder / "sub", bands=(13, 1, 1))


def test_request_outside_named_raster_is_all_empty(source: LocalRasterSource) -> None:
    chip = source.read(grid_request(10.0, 10.0, gsd=1.0, px=8, image_id="merc_rgb.tif"))
    assert chip.provenance["empty_fraction"] == 1.0 and chip.pixels.max() == 0


def test_read_errors_name_the_problem(source: LocalRasterSource) -> None:
    with pytest.raises(ImageryError, match=r"no raster .* covers request"):
        source.read(grid_request(10.0, 10.0, gsd=1.0, px=8))
    with pytest.raises(ImageryError, match=r"missing\.tif"):
        source.read(grid_request(synth.MERC_LON, synth.MERC_LAT, gsd=1.0, px=8, image_id="missing.tif"))


def test_no_crs_and_corrupt_files_are_skipped_and_described(folder: Path) -> None:
    synth.no_crs(folder)
    synth.corrupt(folder)
    with pytest.warns(UserWarning) as record:
        src = LocalRasterSource(folder)
    messages = " ".join(str(w.message) for w in record)
    assert "nocrs.tif" in messages and "corrupt.tif" in messages
    skipped = {s["file"]: s["reason"] for s in src.describe()["skipped"]}
    assert set(skipped) == {"nocrs.tif", "corrupt.tif"}
    assert "no CRS" in skipped["nocrs.tif"]
    assert "cannot read raster" in skipped["corrupt.tif"]
    assert len(src.rasters) == 4


def test_strict_mode_raises_naming_the_file(tmp_path: Path) -> None:
    synth.merc_rgb(tmp_path)
    synth.no_crs(tmp_path)
    with pytest.raises(ImageryError, match=r"nocrs\.tif.*no CRS"):
        LocalRasterSource(tmp_path, strict=True)
    (tmp_path / "nocrs.tif").unlink()
    synth.corrupt(tmp_path)
    with pytest.raises(InputFileError, match=r"corrupt\.tif"):
        LocalRasterSource(tmp_path, strict=True)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="imagery folder not found"):
        LocalRasterSource(tmp_path / "nope")
    with pytest.raises(InputFileError, match="no GeoTIFF rasters"):
        LocalRasterSource(tmp_path)
    synth.no_crs(tmp_path)
    with pytest.warns(UserWarning), pytest.raises(InputFileError, match=r"no usable raster.*nocrs\.tif"):
        LocalRasterSource(tmp_path)


def test_single_file_source(folder: Path) -> None:
    src = LocalRasterSource(folder / "merc_rgb.tif")
    assert [r.image_id for r in src.rasters] == ["merc_rgb.tif"]
    assert src.read(grid_request(synth.MERC_LON, synth.MERC_LAT, 0.1, 16)).pixels.shape == (16, 16, 3)


def test_pickles_without_handles_and_reads_the_same(source: LocalRasterSource) -> None:
    req = grid_request(synth.MERC_LON, synth.MERC_LAT, gsd=0.1, px=32)
    before = source.read(req).pixels  # opens and caches a handle
    clone = pickle.loads(pickle.dumps(source))
    assert np.array_equal(clone.read(req).pixels, before)
    assert clone.coverage(box(*req.bbox))[0].image_id == "merc_rgb.tif"


def test_open_handle_cache_is_bounded(folder: Path) -> None:
    src = LocalRasterSource(folder, max_open=1)
    src.read(grid_request(synth.MERC_LON, synth.MERC_LAT, 0.1, 8))
    src.read(grid_request(6.864, 53.417, gsd=12.0, px=8))
    assert len(src._local.cache) == 1


def test_make_imagery_source_specs(folder: Path) -> None:
    for spec in (f"local:{folder}", str(folder)):
        src = make_imagery_source(spec)
        assert isinstance(src, LocalRasterSource) and src.root == folder.resolve()
    # stac:/gee: go through the catalog router (tests/imagery/test_catalog_choose.py); a collection
    # id is not a project id.
    assert make_imagery_source("stac:https://earth-search.aws.element84.com/v1").name == "router"
    with pytest.raises(BadInputError, match="project id"):
        make_imagery_source("gee:COPERNICUS/S2")
    with pytest.raises(BadInputError, match="unknown scheme 's3'"):
        make_imagery_source("s3://bucket/key")
    with pytest.raises(BadInputError):
        make_imagery_source("")
    with pytest.raises(InputFileError, match="imagery folder not found"):
        make_imagery_source(f"local:{folder / 'missing'}")


def test_rgba_alpha_marks_empty_pixels(tmp_path: Path) -> None:
    data = np.full((4, 64, 64), 200, dtype=np.uint8)
    data[3, :, :32] = 0  # west half transparent
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(synth.MERC_LON, synth.MERC_LAT)
    ci = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    synth.write_raster(
        tmp_path / "rgba.tif", data, "EPSG:3857", from_origin(x - 6.4, y + 6.4, 0.2, 0.2), colorinterp=ci
    )
    chip = LocalRasterSource(tmp_path).read(grid_request(synth.MERC_LON, synth.MERC_LAT, gsd=0.1, px=40))
    assert chip.provenance["band_rule"] == "colorinterp" and chip.provenance["bands"] == [1, 2, 3]
    assert 0.4 < chip.provenance["empty_fraction"] < 0.6
    assert chip.pixels[:, :15].max() == 0 and chip.pixels[:, 25:].min() == 200


def test_paletted_band_uses_its_colour_table(tmp_path: Path) -> None:
    data = np.zeros((1, 64, 64), dtype=np.uint8)
    data[0, :, 32:] = 1
    path = synth.write_raster(tmp_path / "pal.tif", data, "EPSG:32633", from_origin(500000, 6000000, 10, 10))
    with rasterio.open(path, "r+") as ds:
        ds.write_colormap(1, {0: (0, 0, 255, 255), 1: (255, 255, 0, 255)})
    src = LocalRasterSource(tmp_path)
    assert src.rasters[0].bands.rule == "palette" and src.rasters[0].stretch == "none"
    lon, lat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform(500320, 5999680)
    px = src.read(grid_request(lon, lat, gsd=10.0, px=20)).pixels
    assert tuple(px[10, 2]) == (0, 0, 255) and tuple(px[10, 17]) == (255, 255, 0)


def test_antimeridian_raster_is_skipped_with_reason(tmp_path: Path) -> None:
    synth.write_raster(
        tmp_path / "dateline.tif", np.ones((1, 8, 8), np.uint8), "EPSG:4326", from_origin(179.9, -16, 0.05, 0.05)
    )
    synth.write_raster(
        tmp_path / "world.tif", np.ones((1, 18, 36), np.uint8), "EPSG:4326", from_origin(-180, 90, 10, 10)
    )
    with pytest.warns(UserWarning, match="antimeridian"):
        src = LocalRasterSource(tmp_path)
    assert [r.image_id for r in src.rasters] == ["world.tif"]  # a whole-world raster is fine
    assert [c.image_id for c in src.coverage(Point(179.95, -16.1))] == ["world.tif"]


def test_truncated_cog_fails_at_read_naming_the_file(tmp_path: Path) -> None:
    """A COG keeps its header first, so truncation shows only when tiles are read."""
    from rasterio.shutil import copy as rio_copy

    (tmp_path / "cog").mkdir()
    rio_copy(synth.merc_rgb(tmp_path), tmp_path / "cog" / "m.tif", driver="COG", COMPRESS="DEFLATE")
    blob = (tmp_path / "cog" / "m.tif").read_bytes()
    (tmp_path / "cog" / "m.tif").write_bytes(blob[: len(blob) // 3])
    src = LocalRasterSource(tmp_path / "cog")
    with pytest.raises(ImageryError, match=r"reading '.*m\.tif' for 'n1' failed"):
        src.read(grid_request(synth.MERC_LON, synth.MERC_LAT, 0.1, 64))
