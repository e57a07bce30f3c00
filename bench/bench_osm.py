"""OSM acquisition benchmarks.

1. PBF source objects/s against a raw pyosmium scan of the same file (ratio).
2. Peak memory of a whole-file pass streamed to objects.parquet as the file grows
   (helsinki, then helsinki tiled 4× and 9× with shifted ids/coordinates), each in a fresh process.
3. Overpass against the loopback fixture: requests/s at full slot use, share of 429s
   (client slots = server slots, then deliberately over-subscribed), and with random faults.

    .venv/bin/python bench/bench_osm.py                 # needs ../shared/data/osm for 1-2
    .venv/bin/python bench/bench_osm.py --requests 300 --slots 4
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import osmium  # noqa: E402

from pipeline.osm import make_osm_source  # noqa: E402
from pipeline.osm.acquire import acquire  # noqa: E402
from pipeline.osm.plan import Plan  # noqa: E402

OSM_DIR = ROOT.parent / "shared" / "data" / "osm"


def raw_scan(path: Path, locations: bool) -> tuple[int, float]:
    """Elements of ``path`` touched in Python by a bare pyosmium loop (the floor we compare to)."""
    start = time.perf_counter()
    fp = osmium.FileProcessor(str(path))
    if locations:
        fp = fp.with_locations().with_areas()
    n = sum(1 for _ in fp)
    return n, time.perf_counter() - start


def source_scan(path: Path) -> tuple[int, float]:
    start = time.perf_counter()
    n = sum(1 for _ in make_osm_source(f"pbf:{path}").objects())
    return n, time.perf_counter() - start


def bench_pbf(files: list[Path], repeat: int) -> None:
    print(f"\n## PBF source vs raw pyosmium scan (best of {repeat})")
    print(
        f"{'file':<18}{'elements':>10}{'raw s':>9}{'raw+geom s':>12}{'ours s':>9}{'objects':>9}"
        f"{'objects/s':>11}{'ours/raw':>10}{'ours/raw+geom':>15}"
    )
    for f in files:
        raw = min((raw_scan(f, False) for _ in range(repeat)), key=lambda r: r[1])
        rawg = min((raw_scan(f, True) for _ in range(repeat)), key=lambda r: r[1])
        ours = min((source_scan(f) for _ in range(repeat)), key=lambda r: r[1])
        print(
            f"{f.name:<18}{raw[0]:>10}{raw[1]:>9.3f}{rawg[1]:>12.3f}{ours[1]:>9.3f}{ours[0]:>9}"
            f"{ours[0] / ours[1]:>11.0f}{ours[1] / raw[1]:>10.1f}{ours[1] / rawg[1]:>15.1f}"
        )


def tile_file(src: Path, k: int, out: Path) -> Path:
    """``src`` copied k×k times side by side (ids offset per copy) — a bigger, realistic file."""
    west, south, east, north = 24.90, 60.14, 24.99, 60.20
    dx, dy = east - west, north - south
    offset = 10**10
    with osmium.SimpleWriter(str(out)) as w:
        for kind in ("n", "w", "r"):
            for c in range(k * k):
                sx, sy, oid = (c % k) * dx, (c // k) * dy, c * offset
                for o in osmium.FileProcessor(
                    src, {"n": osmium.osm.NODE, "w": osmium.osm.WAY, "r": osmium.osm.RELATION}[kind]
                ):
                    if kind == "n":
                        loc = o.location
                        w.add_node(
                            o.replace(id=o.id + oid, location=(loc.lon + sx, loc.lat + sy) if loc.valid() else loc)
                        )
                    elif kind == "w":
                        w.add_way(o.replace(id=o.id + oid, nodes=[n.ref + oid for n in o.nodes]))
                    else:
                        w.add_relation(
                            o.replace(id=o.id + oid, members=[(m.type, m.ref + oid, m.role) for m in o.members])
                        )
    return out


def child_memory(path: str, out: str, heap: bool) -> None:
    """Run in a fresh process: one pass to a parquet; print peak RSS (and Python heap peak) in MB."""
    import tracemalloc

    from storage.objects_table import write_objects

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if heap:
        tracemalloc.start()
    start = time.perf_counter()
    n = write_objects(out, acquire(make_osm_source(f"pbf:{path}"), Plan()))
    secs = time.perf_counter() - start
    py_peak = tracemalloc.get_traced_memory()[1] / 2**20 if heap else None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"objects": n, "seconds": secs, "base_mb": base, "peak_mb": peak, "py_peak_mb": py_peak}))


def _child(path: Path, out: Path, heap: bool) -> dict:
    args = [sys.executable, __file__, "--child-memory", str(path), str(out)] + (["--heap"] if heap else [])
    res = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def bench_memory(helsinki: Path, tmp: Path, sizes: tuple[int, ...]) -> None:
    print("\n## Memory of one pass streamed to objects.parquet, as the file grows (fresh process each)")
    print("   RSS = whole process (osmium read-ahead queues, node index, area assembly included);")
    print("   Python heap = tracemalloc peak of our own objects (separate run: tracemalloc is slow)")
    print(
        f"{'file':<22}{'MB':>6}{'objects':>9}{'s':>7}{'objects/s':>11}{'RSS before':>12}{'RSS peak':>10}"
        f"{'growth':>8}{'Python heap':>13}"
    )
    for k in sizes:
        f = helsinki if k == 1 else tile_file(helsinki, k, tmp / f"helsinki_x{k * k}.osm.pbf")
        r = _child(f, tmp / f"o{k}.parquet", heap=False)
        h = _child(f, tmp / f"h{k}.parquet", heap=True)
        print(
            f"{f.name:<22}{f.stat().st_size / 2**20:>6.1f}{r['objects']:>9}{r['seconds']:>7.2f}"
            f"{r['objects'] / r['seconds']:>11.0f}{r['base_mb']:>12.0f}{r['peak_mb']:>10.0f}"
            f"{r['peak_mb'] - r['base_mb']:>8.0f}{h['py_peak_mb']:>13.1f}"
        )


def bench_overpass(requests: int, slots: int, latency: float) -> None:
    import random

    from pipeline.geo import BBox
    from pipeline.osm.overpass import OverpassConfig, OverpassSource
    from pipeline.osm.overpass_ql import build_query, split_bbox
    from tests.osm.conftest import synthetic_elements
    from tests.osm.overpass_server import OverpassFixture

    print(
        f"\n## Overpass fixture run: {requests} cell queries, server limit {slots} concurrent, "
        f"{latency * 1000:.0f} ms per answer (ideal: {slots / latency:.0f} req/s)"
    )
    print(
        f"{'scenario':<34}{'requests':>9}{'req/s':>8}{'429 share':>11}{'max in flight':>15}{'retries':>9}"
        f"{'objects':>9}{'failed q':>10}"
    )
    cells = split_bbox(BBox(23.98, 59.98, 24.01, 60.01), 0.03 / int(requests**0.5))[:requests]
    queries = [build_query(c) for c in cells]
    scenarios = [
        ("client slots = server slots", slots, slots, {}),
        ("client workers 2x, slots = server", slots, 2 * slots, {}),
        ("client slots 2x server (no limit)", 2 * slots, 2 * slots, {}),
        ("slots = server, 5% 429 + 2% 504", slots, slots, {"429": 0.05, "504": 0.02}),
    ]
    for name, client_slots, workers, faults in scenarios:
        with tempfile.TemporaryDirectory() as slot_dir, OverpassFixture(synthetic_elements(12), slots=slots) as fx:
            fx.state.fault_rate = faults
            fx.state.latency_s = latency
            cfg = OverpassConfig(
                endpoints=(fx.endpoint,),
                slots_per_endpoint=client_slots,
                cache_dir=None,
                slot_dir=slot_dir,
                backoff_s=0.02,
                max_backoff_s=0.2,
                attempts=8,
                socket_timeout_s=5,
            )
            src = OverpassSource(cfg, workers=workers, rng=random.Random(0))
            start = time.perf_counter()
            n = sum(1 for _ in src.run_queries(queries, keep_going=True))
            secs = time.perf_counter() - start
            sent = fx.state.counts["interpreter"]
            share = fx.state.counts["429"] / sent
            print(
                f"{name:<34}{sent:>9}{sent / secs:>8.1f}{share:>11.1%}{fx.state.max_in_flight:>15}"
                f"{src.client.stats['retries']:>9}{n:>9}{len(src.failures):>10}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child-memory", nargs=2, metavar=("PBF", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--heap", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sizes", default="1,2,3", help="tiling factors k (file = k×k helsinki copies)")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--latency", type=float, default=0.05, help="fixture seconds per answer")
    ap.add_argument("--overpass-only", action="store_true", help="skip the PBF and memory benchmarks")
    args = ap.parse_args()
    if args.child_memory:
        child_memory(*args.child_memory, heap=args.heap)
        return
    files = [p for p in (OSM_DIR / "kotka.osm.pbf", OSM_DIR / "helsinki.osm.pbf") if p.is_file()]
    if files and not args.overpass_only:
        bench_pbf(files, args.repeat)
        with tempfile.TemporaryDirectory() as tmp:
            bench_memory(OSM_DIR / "helsinki.osm.pbf", Path(tmp), tuple(int(s) for s in args.sizes.split(",")))
    elif not files:
        print(f"(no OSM extracts at {OSM_DIR}: PBF and memory benchmarks skipped)")
    bench_overpass(args.requests, args.slots, args.latency)


if __name__ == "__main__":
    main()
