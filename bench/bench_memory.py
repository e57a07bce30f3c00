"""Peak memory of the build's planner and of one shard worker as the object count grows.

Synthetic but realistic layout: buildings (small squares) at a constant density over a square
area that grows with the count (1×, 10×, ...), a 2 m RGB raster under all of it, and an
``objects.parquet`` as the OSM input. Each step runs in a fresh process and reports its peak
RSS (``ru_maxrss``) above the same process's RSS right after imports (the baseline measured in
the same run), so import cost does not hide growth.

    .venv/bin/python bench/bench_memory.py                 # 1x = 10k objects, and 10x
    .venv/bin/python bench/bench_memory.py --base 2000 --scales 1 10
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DENSITY_PER_KM2 = 2_000
GSD = 1.0
LON0, LAT0 = 32.5, 0.3

STEP = r'''
import json, resource, sys, time
sys.path.insert(0, {root!r})
from pipeline.build import BuildInputs, prepare_run, run_shard
from pipeline.config import load_config
def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
base = rss_mb()
cfg = load_config(preset="tiny", max_objects=None)
cfg = cfg.replace(caption=cfg.caption.__class__(max_surrounding=10, unknown_tags="drop"),
                  shards=cfg.shards.__class__(shard_size=256, jpeg_quality=85))
inputs = BuildInputs(osm={osm!r}, imagery={imagery!r}, out={out!r})
t0 = time.perf_counter()
plan = prepare_run(inputs, cfg, log=lambda m: None)
if {step!r} == "planner":
    print(json.dumps(dict(base=base, peak=rss_mb(), seconds=time.perf_counter() - t0, shards=len(plan.tasks))))
else:
    # The planner ran in another process; here prepare_run only reads the persisted plan back.
    after_prepare = rss_mb()
    stats = run_shard(plan.tasks[len(plan.tasks) // 2], plan.context)
    print(json.dumps(dict(base=after_prepare, peak=rss_mb(), seconds=time.perf_counter() - t0,
                          written=stats["successes"], count=stats["count"])))
'''


def make_inputs(root: Path, n: int, seed: int = 0) -> tuple[str, str]:
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin
    from shapely.geometry import box

    from pipeline.records import OsmObject
    from storage.objects_table import write_objects

    side_m = math.sqrt(n / DENSITY_PER_KM2) * 1000.0
    dlat = side_m / 111_320.0
    dlon = side_m / (111_320.0 * math.cos(math.radians(LAT0)))
    rng = np.random.default_rng(seed)
    xs = LON0 + rng.uniform(0.02, 0.98, n) * dlon
    ys = LAT0 + rng.uniform(0.02, 0.98, n) * dlat
    half = 6.0 / 111_320.0
    objs = (OsmObject("way", i + 1, {"building": "yes"}, box(x - half, y - half, x + half, y + half))
            for i, (x, y) in enumerate(zip(xs, ys, strict=True)))
    osm = root / "objects.parquet"
    write_objects(osm, objs)
    img = root / "imagery"
    img.mkdir()
    px = math.ceil(side_m / GSD)
    deg = GSD / 111_320.0
    with rasterio.open(img / "ortho.tif", "w", driver="GTiff", width=px, height=px, count=3, dtype="uint8",
                       crs="EPSG:4326", transform=from_origin(LON0, LAT0 + dlat, deg, deg), tiled=True,
                       compress="deflate") as ds:
        for _, win in ds.block_windows(1):
            ds.write(rng.integers(90, 110, (3, win.height, win.width), dtype=np.uint8), window=win)
    return str(osm), f"local:{img}"


def run_step(step: str, osm: str, imagery: str, out: Path) -> dict:
    code = STEP.format(root=str(ROOT), osm=osm, imagery=imagery, out=str(out), step=step)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if res.returncode != 0:
        raise SystemExit(f"{step} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=int, default=10_000, help="objects at 1x")
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    args = ap.parse_args()
    print(f"density {DENSITY_PER_KM2}/km², raster {GSD} m, shard 256, tiny preset tiles (64-128 px)")
    print(f"{'scale':>5} {'objects':>8} {'planner MB':>11} {'planner s':>10} {'worker MB':>10} {'worker s':>9}")
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
        for scale in args.scales:
            d = Path(tmp) / f"x{scale}"
            d.mkdir()
            n = args.base * scale
            t0 = time.perf_counter()
            osm, imagery = make_inputs(d, n)
            made = time.perf_counter() - t0
            p = run_step("planner", osm, imagery, d / "out")
            w = run_step("worker", osm, imagery, d / "out")
            print(f"{scale:>5} {n:>8} {p['peak'] - p['base']:>11.1f} {p['seconds']:>10.1f} "
                  f"{w['peak'] - w['base']:>10.1f} {w['seconds']:>9.1f}   (inputs made in {made:.0f} s; "
                  f"worker wrote {w['written']}/{w['count']}; process baseline {p['base']:.0f} MB)")


if __name__ == "__main__":
    main()
