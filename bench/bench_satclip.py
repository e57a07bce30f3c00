"""SatCLIP sampler and location-encoder throughput, with baselines measured in the same run.

- ``sample local``: ``skyscript satclip sample`` end to end (draw, windowed read, rejection,
  COG encode, images/ + shard tar + parquet + index.csv) over seeded 12-band scenes;
  baseline: a bare rasterio read of the same windows plus an uncompressed GeoTIFF write.
- ``sample stac``: the same sampling from a loopback STAC API serving one COG per band over
  HTTP range requests (the shape of a Planetary Computer / Earth Search read).
- ``sample gee``: the same sampling from the loopback Earth Engine REST server (one listing,
  then one computePixels per patch, ``--ee-latency`` seconds per pixel answer); baseline: the
  local sampler over the same rasters, in the same run.
- ``harmonics``: our recurrence vs scipy's ``sph_harm_y`` evaluated per (l, m), L = 10 and 40.
- ``encoder``: the L = 40, 512-wide SIREN location encoder in float64, points per second.

    .venv/bin/python bench/bench_satclip.py [--n 60] [--points 20000]
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
import torch  # noqa: E402
from rasterio.windows import Window  # noqa: E402

from pipeline.satclip.local import LocalScenes  # noqa: E402
from pipeline.satclip.output import read_rows  # noqa: E402
from pipeline.satclip.sampler import SampleConfig, sample  # noqa: E402
from pipeline.satclip.stac import StacScenes  # noqa: E402
from tests.satclip.stac_server import StacServer, StacState  # noqa: E402
from tests.satclip.synth import CRS, X0, Y0, scene_pixels, stac_item, write_band_assets, write_scene  # noqa: E402
from training.satclip.location import LocationConfig, LocationEncoder  # noqa: E402
from training.satclip.sh import spherical_harmonics  # noqa: E402


def bench_sampler(tmp: Path, n: int) -> None:
    scenes = tmp / "scenes"
    for k in range(4):
        write_scene(scenes / f"s{k}.tif", 1830, 1830, seed=k, x0=X0 + k * 20_000)  # 1/6 of an S2 tile
    out = tmp / "local"
    t0 = time.perf_counter()
    sample(SampleConfig(n=n, seed=0, by="scene", shard_size=max(1, n // 2)), LocalScenes(scenes), out, workers=1)
    t_ours = time.perf_counter() - t0
    rows = [r for r in read_rows(out).to_pylist() if r["status"] == "ok"]
    t0 = time.perf_counter()
    for r in rows:
        with rasterio.open(scenes / f"{r['scene_id']}.tif") as src:
            arr = src.read(window=Window(r["col_off"], r["row_off"], 256, 256))
            profile = {**src.profile, "width": 256, "height": 256, "compress": None, "tiled": False}
        with rasterio.open(
            tmp / "plain.tif", "w", **{k: v for k, v in profile.items() if k != "blockxsize" and k != "blockysize"}
        ) as dst:
            dst.write(arr)
    t_base = time.perf_counter() - t0
    print(
        f"sample local : {len(rows) / t_ours:8.1f} patches/s  (baseline bare read+write {len(rows) / t_base:8.1f}/s; "
        f"ratio {t_base / t_ours:.2f})"
    )
    t0 = time.perf_counter()
    sample(SampleConfig(n=n, seed=0, by="scene", shard_size=max(1, n // 2)), LocalScenes(scenes), tmp / "w4", workers=4)
    t_w4 = time.perf_counter() - t0
    print(f"sample local, 4 threads: {n / t_w4:8.1f} patches/s ({t_ours / t_w4:.2f}× 1 thread)")

    state = StacState()
    for k in range(2):
        pixels = scene_pixels(1098, 1098, seed=k)
        assets = write_band_assets(tmp / "cogs", f"S{k}", pixels, CRS, X0 + k * 20_000, Y0)
        state.files.update({p.name: p for p in assets.values()})
        state.items.append(stac_item(f"S{k}", assets, "BASE", CRS, X0 + k * 20_000, Y0, 1098, 1098, {}))
    with StacServer(state) as url:
        for it in state.items:
            for a in it["assets"].values():
                a["href"] = a["href"].replace("BASE", url)
        m = max(4, n // 3)
        t0 = time.perf_counter()
        sample(SampleConfig(n=m, seed=0, by="scene", shard_size=m), StacScenes(url), tmp / "stac")
        t_stac = time.perf_counter() - t0
        requests = state.hits["file"]
        t0 = time.perf_counter()
        sample(SampleConfig(n=m, seed=0, by="scene", shard_size=m), StacScenes(url), tmp / "stac4", workers=4)
        t_stac4 = time.perf_counter() - t0
    print(
        f"sample stac  : {m / t_stac:8.1f} patches/s  (12 per-band COGs over loopback HTTP; "
        f"{requests} HTTP requests, {requests / m:.0f} per patch; "
        f"vs local {t_ours / n * m / t_stac:.2f}×)"
    )
    print(f"sample stac, 4 threads: {m / t_stac4:8.1f} patches/s ({t_stac / t_stac4:.2f}× 1 thread)")


def bench_gee(tmp: Path, n: int, latency_s: float) -> None:
    import os

    from pipeline.satclip.gee import EE_BANDS, EE_COLLECTION, GeeScenes
    from tests.servers.earth_engine import Asset, EarthEngineServer

    folder = tmp / "gee_rasters"
    assets = []
    for k in range(2):
        path = write_scene(folder / f"g{k}.tif", 1098, 1098, seed=k, x0=X0 + k * 20_000)
        props = {"CLOUDY_PIXEL_PERCENTAGE": 3.0, "MGRS_TILE": "32UMB", "SPACECRAFT_NAME": "Sentinel-2A"}
        assets.append(Asset(f"{EE_COLLECTION}/2022060{k}T000000_T32UMB", path, list(EE_BANDS), "2022-06-01", props))
    cfg = SampleConfig(n=n, seed=0, by="scene", shard_size=n)
    t0 = time.perf_counter()
    sample(cfg, LocalScenes(folder), tmp / "gee_local", workers=1)
    t_local = time.perf_counter() - t0
    os.environ.update(SKYSCRIPT_EE_TOKEN="bench", SKYSCRIPT_CACHE=str(tmp / "cache"), NO_GCE_CHECK="true")
    with EarthEngineServer(assets, token="bench", latency_s=latency_s) as srv:
        os.environ["SKYSCRIPT_EE_URL"] = srv.url
        src = GeeScenes("bench-project")
        srv.hits.clear()
        t0 = time.perf_counter()
        sample(cfg, src, tmp / "gee1", workers=1)
        t_gee = time.perf_counter() - t0
        requests = srv.hits["compute"] + srv.hits["pixels"]
        t0 = time.perf_counter()
        sample(cfg, src, tmp / "gee8", workers=8)
        t_gee8 = time.perf_counter() - t0
    print(
        f"sample gee   : {n / t_gee:8.1f} patches/s  (loopback EE, {latency_s:.2f} s per pixel answer; "
        f"{requests} requests, {requests / n:.2f} per patch; local sampler same run {n / t_local:.1f}/s, "
        f"ratio {t_local / t_gee:.2f})"
    )
    print(f"sample gee, 8 threads: {n / t_gee8:8.1f} patches/s ({t_gee / t_gee8:.2f}× 1 thread)")


def scipy_sh(lonlat: np.ndarray, big_l: int) -> np.ndarray:
    from scipy.special import sph_harm_y

    phi, theta = np.deg2rad(lonlat[:, 0] + 180), np.deg2rad(lonlat[:, 1] + 90)
    cols = []
    for deg in range(big_l):
        for m in range(-deg, deg + 1):
            y = sph_harm_y(deg, abs(m), theta, phi)
            cols.append(y.real if m == 0 else math.sqrt(2) * (-1) ** m * (y.real if m > 0 else y.imag))
    return np.stack(cols, -1)


def bench_harmonics(points: int) -> None:
    rng = np.random.default_rng(0)
    ll = np.c_[rng.uniform(-180, 180, points), rng.uniform(-90, 90, points)]
    t = torch.from_numpy(ll)
    for big_l in (10, 40):
        t0 = time.perf_counter()
        ours = spherical_harmonics(t, big_l).numpy()
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = scipy_sh(ll, big_l)
        t_ref = time.perf_counter() - t0
        err = float(np.abs(ours - ref).max())
        print(
            f"harmonics L={big_l:<2}: {points / t_ours:10.0f} points/s  (scipy per (l,m) {points / t_ref:10.0f}/s; "
            f"ratio {t_ref / t_ours:.1f}; max |diff| {err:.1e})"
        )
    enc = LocationEncoder(LocationConfig(legendre_polys=40, embed_dim=256, capacity=512)).eval()
    t0 = time.perf_counter()
    enc.embed(t)
    dt = time.perf_counter() - t0
    print(
        f"encoder L=40 : {points / dt:10.0f} points/s  "
        f"(float64, 512 hidden, 256-d, CPU, {torch.get_num_threads()} threads)"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--points", type=int, default=20000)
    ap.add_argument("--ee-latency", type=float, default=0.2, help="seconds per computePixels answer (loopback EE)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_satclip_"))
    try:
        bench_sampler(tmp, args.n)
        bench_gee(tmp, max(8, args.n // 2), args.ee_latency)
        bench_harmonics(args.points)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
