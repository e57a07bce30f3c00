"""build-graft on the real rasters in ../shared/data: Sentinel-2 L2A patches (10 m, 12 bands) and
OpenAerialMap orthophotos (resampled to a 1 m NAIP-like grid). Photo locations are seeded inside them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import webdataset as wds
from PIL import Image
from pyproj import Transformer
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.graft.writer import read_rows, shard_urls


def _photos_inside(raster: Path, n: int, margin_m: float, out: Path, seed: int) -> Path:
    with rasterio.open(raster) as ds:
        b, crs = ds.bounds, ds.crs
    rng = np.random.default_rng(seed)
    tr = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    if crs.to_epsg() == 3857:  # web-mercator metres are not ground metres: keep well inside
        margin_m *= 1.2
    x = rng.uniform(b.left + margin_m, b.right - margin_m, n)
    y = rng.uniform(b.bottom + margin_m, b.top - margin_m, n)
    lon, lat = tr.transform(x, y)
    pd.DataFrame({"id": [f"s{i}" for i in range(n)], "lat": lat, "lon": lon,
                  "taken": [f"2021-07-{1 + i % 28:02d}" for i in range(n)]}).to_csv(out, index=False)
    return out


def test_sentinel2_patch(shared_data: Path, tmp_path: Path) -> None:
    raster = shared_data / "imagery" / "sentinel2" / "example_s2_patch_33188.tif"
    table = _photos_inside(raster, 40, 400.0, tmp_path / "p.csv", seed=1)
    out = tmp_path / "s2"
    res = CliRunner().invoke(app, ["build-graft", "--photos", str(table), "--imagery", f"local:{raster}",
                                   "--out", str(out), "--collection", "COPERNICUS/S2_SR_HARMONIZED",
                                   "--tile-px", "32", "--metadata-only"])
    assert res.exit_code == 0, res.output
    rows = read_rows(out / "shards").to_pylist()
    assert rows and all(r["status"] == "ok" for r in rows)
    run = json.loads((out / "run.json").read_text())
    assert run["tiling"]["gsd"] == 10.0 and run["build"]["pick_rule"] == "closest-to-date"
    for s in wds.WebDataset(shard_urls(out / "shards"), shardshuffle=False, empty_check=False):
        meta = json.loads(s["json"])
        img = np.asarray(Image.open(io.BytesIO(s["sat.jpg"])))
        assert img.shape == (64, 64, 3) and img.std() > 2  # real texture, not an empty chip
        assert meta["provenance"]["bands"] == [4, 3, 2]  # B4, B3, B2 of the L2A stack
        assert meta["date"].startswith("2021-07") and meta["gsd"] == 10.0


def test_oam_orthophoto_on_a_1m_grid(shared_data: Path, tmp_path: Path) -> None:
    raster = shared_data / "imagery" / "oam" / "area2_block0_z19.tif"
    table = _photos_inside(raster, 30, 40.0, tmp_path / "p.csv", seed=2)
    out = tmp_path / "oam"
    res = CliRunner().invoke(app, ["build-graft", "--photos", str(table), "--imagery", f"local:{raster}",
                                   "--out", str(out), "--tile-px", "32", "--gsd", "1", "--metadata-only"])
    assert res.exit_code == 0, res.output
    rows = read_rows(out / "shards").to_pylist()
    assert sum(r["status"] == "ok" for r in rows) >= len(rows) // 2
    assert {r["error_code"] for r in rows if r["status"] != "ok"} <= {"no_imagery"}  # edge tiles only
    ok = [r for r in rows if r["status"] == "ok"]
    assert all(r["width"] == 64 and r["crs"].startswith("EPSG:326") for r in ok)
