"""The sampler against a loopback STAC API serving per-band COGs (synthetic, and real S2 patches)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
from pyproj import Transformer
from rasterio.windows import Window

from pipeline.satclip.sampler import SampleConfig, sample
from pipeline.satclip.scenes import S2_BANDS, SceneFilter
from pipeline.satclip.stac import StacScenes
from tests.satclip.stac_server import StacServer, StacState
from tests.satclip.synth import CRS, X0, Y0, scene_pixels, stac_item, write_band_assets


def _index(out: Path) -> list[dict[str, str]]:
    with open(out / "index.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _state(tmp_path: Path, coarse: bool = True) -> StacState:
    state = StacState()
    for k, (w, h, cloud, day) in enumerate(
        [(400, 300, 5.0, "2022-06-01"), (300, 300, 50.0, "2022-06-02"), (300, 280, 2.0, "2020-05-01")]
    ):
        x0 = X0 + k * 5000
        pixels = scene_pixels(w, h, seed=10 + k)
        assets = write_band_assets(tmp_path / "cogs", f"S{k}", pixels, CRS, x0, Y0, coarse=coarse)
        state.files.update({p.name: p for p in assets.values()})
        state.items.append(
            stac_item(
                f"S{k}",
                assets,
                "BASE",
                CRS,
                x0,
                Y0,
                w,
                h,
                {"eo:cloud_cover": cloud, "datetime": f"{day}T10:00:00Z", "s2:mgrs_tile": "32UNA"},
                with_proj=k != 0,
            )
        )
    return state


def _bind(state: StacState, url: str) -> None:
    for it in state.items:
        for a in it["assets"].values():
            a["href"] = a["href"].replace("BASE", url)


def test_stac_sampler_pixels_filters_retries(tmp_path: Path) -> None:
    state = _state(tmp_path)
    state.fail_searches = 2  # the first two searches answer 429: retried, not fatal
    with StacServer(state) as url:
        _bind(state, url)
        out = tmp_path / "out"
        cfg = SampleConfig(n=4, seed=5, by="scene", shard_size=10)
        result = sample(cfg, StacScenes(url, backoff=0.0), out, workers=3)
    assert state.hits["search"] == 3
    assert result["written"]["ok"] == 4
    rows = _index(out)
    # only S0 passes the default filters (S1 is 50 % cloudy, S2 is from 2020); S0 has no proj:
    # metadata, so its grid came from reading the B02 COG header
    assert {r["scene_id"] for r in rows} == {"S0"}
    to_utm = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
    for r in rows:
        col, row = int(r["col_off"]), int(r["row_off"])
        with rasterio.open(out / "images" / r["fn"]) as ds:
            patch, bounds = ds.read(), ds.bounds
            assert patch.shape == (12, 256, 256) and patch.dtype == np.uint16
            assert ds.tags()["cloud_cover"] == "5.0" and ds.tags()["mgrs_tile"] == "32UNA"
            assert list(ds.descriptions) == list(S2_BANDS)
        for b, band in enumerate(S2_BANDS):
            with rasterio.open(tmp_path / "cogs" / f"S0_{band}.tif") as src:
                if src.res[0] == 10.0:  # 10 m bands: exactly the direct read of the same window
                    np.testing.assert_array_equal(patch[b], src.read(1, window=Window(col, row, 256, 256)))
                elif col % 2 == 0 and row % 2 == 0 and src.res[0] == 20.0:  # 20 m: nearest = each pixel twice
                    direct = src.read(1, window=Window(col // 2, row // 2, 128, 128))
                    np.testing.assert_array_equal(patch[b], np.repeat(np.repeat(direct, 2, 0), 2, 1))
        x, y = to_utm.transform(float(r["lon"]), float(r["lat"]))
        assert abs(x - (bounds.left + bounds.right) / 2) < 1e-3 and abs(y - (bounds.top + bounds.bottom) / 2) < 1e-3


def test_stac_scene_vanishes_between_search_and_read(tmp_path: Path) -> None:
    state = _state(tmp_path, coarse=False)
    state.gone = {f"S0_{b}.tif" for b in ("B04",)}  # listed by the search, 404 when read
    with StacServer(state) as url:
        _bind(state, url)
        out = tmp_path / "out"
        cfg = SampleConfig(n=2, by="scene", max_tries=2, scenes=SceneFilter(max_cloud=20.0))
        result = sample(cfg, StacScenes(url, backoff=0.0), out)
    assert result["written"]["failed"] == 2 and result["errors"] == {"scene_gone": 2}
    rows = pq.read_table(out / "shards" / "00000.parquet").to_pylist()
    assert all("S0" in r["error_message"] and "vanished" in r["error_message"] for r in rows)
    assert (out / "index.csv").read_text().splitlines() == [
        "fn,lon,lat,scene_id,datetime,cloud_cover,mgrs_tile,platform,crs,col_off,row_off"
    ]


def test_stac_land_mode_searches_at_the_point(tmp_path: Path) -> None:
    state = _state(tmp_path, coarse=False)
    s0 = state.items[0]
    w, s, e, n = s0["bbox"]
    with StacServer(state) as url:
        _bind(state, url)
        out = tmp_path / "out"
        cfg = SampleConfig(n=3, seed=1, by="land", region=(w, s, e, n))
        result = sample(cfg, StacScenes(url), out, workers=2)
    assert result["written"]["ok"] == 3
    for r in _index(out):
        assert r["scene_id"] == "S0" and w <= float(r["lon"]) <= e and s <= float(r["lat"]) <= n


@pytest.mark.shared_data
def test_real_sentinel2_patches_over_stac(tmp_path: Path, shared_data: Path) -> None:
    """Real S2 L2A patches (256×256, UTM) split into per-band COGs: one-window scenes, read back exactly."""
    state = StacState()
    sources = sorted((shared_data / "imagery" / "sentinel2").glob("example_s2_patch_*.tif"))[:3]
    assert sources
    originals = {}
    for k, path in enumerate(sources):
        with rasterio.open(path) as ds:
            pixels, crs, t = ds.read(), ds.crs.to_string(), ds.transform
        originals[f"R{k}"] = pixels
        assets = write_band_assets(tmp_path / "cogs", f"R{k}", pixels, crs, t.c, t.f, coarse=False)
        state.files.update({p.name: p for p in assets.values()})
        state.items.append(stac_item(f"R{k}", assets, "BASE", crs, t.c, t.f, 256, 256, {"s2:mgrs_tile": f"T{k}"}))
    with StacServer(state) as url:
        _bind(state, url)
        out = tmp_path / "out"
        result = sample(SampleConfig(n=6, seed=0, by="scene"), StacScenes(url), out)
    assert result["written"]["ok"] == 6
    for r in _index(out):
        assert (r["col_off"], r["row_off"]) == ("0", "0")
        with rasterio.open(out / "images" / r["fn"]) as ds:
            np.testing.assert_array_equal(ds.read(), originals[r["scene_id"]])
            centre = ds.xy(128, 128, offset="ul")
            lon, lat = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True).transform(*centre)
        assert float(r["lon"]) == pytest.approx(lon, abs=1e-9) and float(r["lat"]) == pytest.approx(lat, abs=1e-9)


def _partly_nodata_state(tmp_path: Path, originals: list[tuple[np.ndarray, str, float, float]]) -> StacState:
    """Scene k keeps its pixels except the top rows, zeroed (S2 L2A nodata = 0) to fraction ``cut[k]``."""
    state = StacState()
    cuts = [0.0, 0.2, 0.05]
    for k, (pixels, crs, x0, y0) in enumerate(originals):
        px = pixels.copy()
        px[:, : round(cuts[k] * 256), :] = 0
        assets = write_band_assets(tmp_path / "cogs", f"P{k}", px, crs, x0, y0, coarse=False)
        state.files.update({p.name: p for p in assets.values()})
        state.items.append(stac_item(f"P{k}", assets, "BASE", crs, x0, y0, 256, 256, {}))
    return state


def _check_partly_nodata(tmp_path: Path, state: StacState) -> None:
    with StacServer(state) as url:
        _bind(state, url)
        out = tmp_path / "out"
        result = sample(SampleConfig(n=12, seed=3, by="scene", max_tries=30), StacScenes(url), out)
    assert result["written"]["ok"] == 12
    used = {r["scene_id"] for r in _index(out)}
    assert used == {"P0", "P2"}  # P1 (20 % nodata) never passes; P2 (5 %) does
    stats = (out / "shards" / "00000_stats.json").read_text()
    assert '"nodata"' in stats
    for r in _index(out):
        with rasterio.open(out / "images" / r["fn"]) as ds:
            assert (ds.read() == 0).all(axis=0).mean() <= 0.1


def test_rejection_on_partly_nodata_scenes_synthetic(tmp_path: Path) -> None:
    originals = [(scene_pixels(256, 256, seed=30 + k), CRS, X0 + k * 5000, Y0) for k in range(3)]
    _check_partly_nodata(tmp_path, _partly_nodata_state(tmp_path, originals))


@pytest.mark.shared_data
def test_rejection_on_partly_nodata_real_patches(tmp_path: Path, shared_data: Path) -> None:
    originals = []
    for path in sorted((shared_data / "imagery" / "sentinel2").glob("ssl4eo_example_images_patch_*.tif"))[:3]:
        with rasterio.open(path) as ds:
            originals.append((ds.read(), ds.crs.to_string(), ds.transform.c, ds.transform.f))
    _check_partly_nodata(tmp_path, _partly_nodata_state(tmp_path, originals))
