"""GRAFT tiling throughput (photos/s) against a naive tiler measured in the same run.

Both tilers run the same greedy rule (same groups, same seeded order, same UTM squares) and must
produce the identical plan — the bench checks it. They differ only in how a centre finds its
members:

- ``kdtree`` (``pipeline.graft.tiling``): a KD-tree on unit-sphere coordinates gives candidates
  near the centre; photos in the centre's UTM zone reuse coordinates projected once;
- ``naive`` (``plan_tiles(..., brute_force=True)``): every centre projects all still-unassigned
  photos of its group into its zone and tests them (O(n²) per group) — how a straightforward
  script does it.

Photos: the real im2gps3k locations from ``../shared/data/ground_photos`` (when present) jittered
into a larger set, with seeded taken dates, plus seeded city clusters.

    .venv/bin/python bench/bench_graft.py [--photos N] [--gsd 1.0] [--tile-px 224]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from pyproj import Geod  # noqa: E402

from pipeline.graft.photos import GroundPhoto, load_photo_table  # noqa: E402
from pipeline.graft.tiling import TilePlan, TilingConfig, group_photos, plan_tiles  # noqa: E402

IM2GPS = ROOT.parent / "shared" / "data" / "ground_photos" / "im2gps3k_places365.csv"
CITIES = [(2.35, 48.86), (-73.98, 40.75), (139.7, 35.68), (-0.12, 51.5), (24.94, 60.17), (-122.42, 37.77)]


def make_photos(n: int, seed: int) -> list[GroundPhoto]:
    rng = np.random.default_rng(seed)
    g = Geod(ellps="WGS84")
    anchors: list[tuple[float, float]] = list(CITIES)
    if IM2GPS.is_file():
        anchors += [(p.lon, p.lat) for p in load_photo_table(IM2GPS).photos]
    idx = rng.integers(0, len(anchors), n)
    lon0 = np.array([anchors[i][0] for i in idx])
    lat0 = np.array([anchors[i][1] for i in idx])
    # Heavy-tailed spread: most photos within a few hundred metres of a hot spot, some kilometres away.
    dist = rng.exponential(400.0, n)
    lon, lat, _ = g.fwd(lon0, lat0, rng.uniform(0, 360, n), dist)
    lon = (np.asarray(lon) + 180.0) % 360.0 - 180.0
    day = rng.integers(0, 4 * 365, n)
    dates = [np.datetime64("2018-01-01") + np.timedelta64(int(d), "D") for d in day]
    return [GroundPhoto(f"b{i:07d}", float(a), float(b), f"{d}T12:00:00")
            for i, (a, b, d) in enumerate(zip(lon, np.asarray(lat), dates, strict=True))]


def regional_photos(n: int, seed: int) -> list[GroundPhoto]:
    """One 10° cell (Paris region): a few hot spots holding most photos, the rest spread thinly —
    the density a GRAFT build over one region faces (groups of thousands of photos)."""
    rng = np.random.default_rng(seed)
    g = Geod(ellps="WGS84")
    spots = [(2.35, 48.86), (2.29, 48.86), (2.35, 48.89), (2.12, 48.80), (4.03, 49.26), (1.91, 47.90)]
    k = rng.integers(0, len(spots), n)
    dist = np.where(rng.random(n) < 0.8, rng.exponential(300.0, n), rng.uniform(0, 60_000, n))
    lon, lat, _ = g.fwd(np.array([spots[i][0] for i in k]), np.array([spots[i][1] for i in k]),
                        rng.uniform(0, 360, n), dist)
    days = [np.datetime64("2020-01-01") + np.timedelta64(int(d), "D") for d in rng.integers(0, 2 * 365, n)]
    return [GroundPhoto(f"r{i:07d}", float(a), float(b), f"{d}T12:00:00")
            for i, (a, b, d) in enumerate(zip(np.asarray(lon), np.asarray(lat), days, strict=True))]


def signature(plan: TilePlan) -> list[tuple]:
    return [(a.tile_id, a.photo.photo_id, round(a.px_x, 6), round(a.px_y, 6)) for a in plan.assignments]


def compare(name: str, photos: list[GroundPhoto], cfg: TilingConfig) -> bool:
    t0 = time.perf_counter()
    naive = plan_tiles(photos, cfg, brute_force=True)
    t_naive = time.perf_counter() - t0
    t0 = time.perf_counter()
    fast = plan_tiles(photos, cfg)
    t_fast = time.perf_counter() - t0
    same = signature(naive) == signature(fast) and naive.tiles == fast.tiles
    biggest = max(len(v) for v in group_photos(photos, cfg.cell_deg).values())
    print(f"{name}: {len(photos):,} photos, {len(fast.tiles):,} tiles, largest group {biggest:,} photos; "
          f"plans identical: {same}")
    print(f"  naive  {len(photos) / t_naive:12,.0f} photos/s  ({t_naive:.2f} s)")
    print(f"  kdtree {len(photos) / t_fast:12,.0f} photos/s  ({t_fast:.2f} s)  -> {t_naive / t_fast:.1f}x the naive")
    return same


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=30_000, help="photos in each scenario")
    ap.add_argument("--gsd", type=float, default=1.0)
    ap.add_argument("--tile-px", type=int, default=224)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    cfg = TilingConfig(gsd=a.gsd, tile_px=a.tile_px, seed=a.seed)
    ok = compare("global (im2gps-anchored)", make_photos(a.photos, a.seed), cfg)
    ok &= compare("regional (one 10° cell)", regional_photos(a.photos, a.seed), cfg)
    if not ok:
        raise SystemExit("the two tilers disagree: a bug in one of them")


if __name__ == "__main__":
    main()
