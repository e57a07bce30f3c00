"""Chips per second from the three imagery sources, and how each scales with concurrency.

The same chip requests (256 px at 0.5 m, seeded positions inside one scene; a seeded noise COG of
2048x2048 px written here, so no shared data is needed) are read from:

- ``local``: ``LocalRasterSource`` over the COG on disk — the baseline, measured in the same run;
- ``stac``: ``StacSource`` against the loopback STAC API fixture, pixels by HTTP range requests
  from the same COG (``--stac-latency`` seconds added to each search, default 0.05);
- ``gee``: ``GeeSource`` against the loopback Earth Engine fixture with a realistic round trip per
  ``computePixels`` (``--gee-latency``, default 0.5 s; Earth Engine answers small chips in ~0.3-1 s).

Each is read with 1, 4 and 16 threads (Earth Engine also 32, bounded by
``imagery.gee.max_concurrent`` = 20). The cache root is a fresh temporary folder, so every STAC
search and Earth Engine metadata request is really made (one per chip).

    .venv/bin/python bench/bench_sources.py [--chips N] [--gee-latency S] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from rasterio.enums import ColorInterp  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402

from pipeline.config import GeeConfig, ImageryConfig  # noqa: E402
from pipeline.imagery.catalog import load_catalog  # noqa: E402
from pipeline.imagery.georef import transformer  # noqa: E402
from pipeline.imagery.http import HttpPolicy  # noqa: E402
from pipeline.imagery.local import LocalRasterSource  # noqa: E402
from pipeline.records import Chip, ChipRequest  # noqa: E402
from pipeline.retry import RetryPolicy  # noqa: E402
from tests.servers.earth_engine import Asset, EarthEngineServer  # noqa: E402
from tests.servers.stac_api import Scene, StacServer, write_cog  # noqa: E402

CRS, X0, Y0, RES, SIZE, CHIP = "EPSG:32632", 500_000.0, 5_300_000.0, 0.5, 2048, 256
CATALOG = f"""
collections:
  - {{id: bench/stac, source: stac, collection: rgb, gsd: {RES}, bands: ["visual:1", "visual:2", "visual:3"],
      range: [0, 255], coverage: global}}
  - {{id: bench/gee, source: gee, gsd: {RES}, bands: [R, G, B], range: [0, 255], coverage: global}}
"""


def make_cog(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    data = rng.integers(1, 255, size=(3, SIZE, SIZE), dtype=np.uint8)
    tmp = folder / "src.tif"
    with rasterio.open(tmp, "w", driver="GTiff", width=SIZE, height=SIZE, count=3, dtype="uint8", crs=CRS,
                       transform=from_origin(X0, Y0, RES, RES), tiled=True, blockxsize=256, blockysize=256) as ds:
        ds.write(data)
        ds.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    return write_cog(folder / "scene.tif", tmp)


def requests(n: int, collection: str) -> list[ChipRequest]:
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        col, row = (int(v) for v in rng.integers(0, SIZE - CHIP, size=2))
        x0, y1 = X0 + col * RES, Y0 - row * RES
        bounds = (x0, y1 - CHIP * RES, x0 + CHIP * RES, y1)
        bbox = transformer(CRS, "EPSG:4326").transform_bounds(*bounds, densify_pts=21)
        out.append(ChipRequest(f"w{i}", "way", i, tuple(bbox), CRS, bounds, CHIP, CHIP, RES, collection, 0))
    return out


def rate(read: Callable[[ChipRequest], Chip], reqs: Sequence[ChipRequest], threads: int) -> float:
    t0 = time.perf_counter()
    if threads == 1:
        for r in reqs:
            read(r)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(read, reqs))
    return len(reqs) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chips", type=int, default=48)
    ap.add_argument("--stac-latency", type=float, default=0.05)
    ap.add_argument("--gee-latency", type=float, default=0.5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-sources-"))
    os.environ.update(SKYSCRIPT_CACHE=str(work / "cache"), SKYSCRIPT_EE_TOKEN="bench", NO_GCE_CHECK="true")
    cog = make_cog(work)
    (work / "catalog.yaml").write_text(CATALOG)
    cat = load_catalog(work / "catalog.yaml")
    results: dict[str, dict[str, float]] = {}

    local = LocalRasterSource(cog)
    local.read(requests(1, "local")[0])  # open the file once
    results["local"] = {str(t): rate(local.read, requests(args.chips, "local"), t) for t in (1, 4)}

    from pipeline.imagery.stac import StacSource

    with StacServer([Scene("s", "rgb", "2022-06-01T00:00:00Z", {"visual": cog})], latency_s=args.stac_latency) as srv:
        res: dict[str, float] = {}
        for t in (1, 4, 16):
            src = StacSource(srv.url, cat.for_source("stac"), policy=HttpPolicy(), use_cache=False)
            res[str(t)] = rate(src.read, requests(args.chips, "bench/stac"), t)
        res["range_requests_per_chip"] = srv.range_requests / (3 * args.chips)
        results["stac"] = res

    from pipeline.imagery.gee import GeeSource

    assets = [Asset("users/bench/scenes/s", cog, ["R", "G", "B"], "2022-06-01")]
    with EarthEngineServer(assets, collections={"bench/gee": ["users/bench/scenes/s"]}, token="bench",
                           latency_s=args.gee_latency) as srv:
        res = {}
        for t in (1, 4, 16, 32):
            src = GeeSource("bench", cat.for_source("gee"), ImageryConfig(gee=GeeConfig(url=srv.url)),
                            policy=RetryPolicy(3, 0.1, 1.0), use_cache=False)
            n = args.chips if t > 1 else max(4, args.chips // 8)
            srv.max_in_flight = 0
            res[str(t)] = rate(src.read, requests(n, "bench/gee"), t)
            res[f"max_in_flight@{t}"] = srv.max_in_flight
        results["gee"] = res

    base = results["local"]["1"]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{args.chips} chips of {CHIP}x{CHIP} px (uint8 RGB COG {SIZE}x{SIZE}); chips/s by threads")
    for name, res in results.items():
        cells = "  ".join(f"{k}: {v:7.1f}" if not k.startswith(("max", "range")) else f"{k}: {v:g}"
                          for k, v in res.items())
        print(f"  {name:6s} {cells}   (1-thread ratio to local: {res['1'] / base:.3f})")
    g = results["gee"]
    print(f"  gee scaling 1 -> 16 threads: x{g['16'] / g['1']:.1f}; "
          f"1 -> 32 (max_concurrent 20): x{g['32'] / g['1']:.1f}")


if __name__ == "__main__":
    main()
