"""Build throughput (objects/s) from local sources and the share of time per stage.

Baseline measured in the same run: reading the very same chips straight from the imagery
source (``LocalRasterSource.read`` on the written requests), i.e. the floor any build over
this source pays. The ratio build/baseline is the pipeline's overhead.

    .venv/bin/python bench/bench_build.py                       # real OAM data when present, else fake
    .venv/bin/python bench/bench_build.py --osm F --imagery local:DIR --max-objects 200
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.build import BuildInputs, build  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.imagery import make_imagery_source  # noqa: E402
from pipeline.records import ChipRequest  # noqa: E402
from storage.shards import iter_samples  # noqa: E402

OAM = ROOT.parent / "shared" / "data" / "imagery" / "oam"


def default_inputs(tmp: Path) -> list[tuple[str, str, str]]:
    if OAM.is_dir():
        return [(f"oam {a}", str(OAM / f"{a}_buildings.osm"), f"local:{OAM}") for a in ("area1", "area2", "area3")]
    from tests.fakes import make_fake_area

    area = make_fake_area(tmp / "fake", seed=0, n_buildings=60, size_m=300.0)
    return [("fake area", str(area.osm), f"local:{area.imagery_dir}")]


def baseline_reads(out: Path, imagery: str) -> tuple[int, float]:
    source = make_imagery_source(imagery)
    reqs = []
    for s in iter_samples(out / "shards"):
        m = s["json"]
        reqs.append(ChipRequest(key=m["key"], osm_type=m["osm_type"], osm_id=m["osm_id"], bbox=tuple(m["bbox"]),
                                crs=m["crs"], bounds=tuple(m["bounds"]), width=m["width"], height=m["height"],
                                gsd=m["gsd"], collection=m["collection"], seed=0, image_id=m["image_id"]))
    t0 = time.perf_counter()
    for r in reqs:
        source.read(r)
    return len(reqs), time.perf_counter() - t0


def run_one(label: str, osm: str, imagery: str, max_objects: int | None, tmp: Path) -> None:
    out = tmp / label.replace(" ", "_")
    cfg = load_config(max_objects=max_objects)
    t0 = time.perf_counter()
    summary = build(BuildInputs(osm=osm, imagery=imagery, out=str(out)), cfg, log=lambda _m: None)
    wall = time.perf_counter() - t0
    run = json.loads((out / "run.json").read_text())
    stages = dict(summary["stage_seconds"])
    stages["acquire"] = run["acquire_seconds"]
    other = max(wall - sum(stages.values()), 0.0)
    stages["other (select, overlay index, bookkeeping)"] = other
    n = summary["planned"]
    print(f"\n== {label}: {run['n_objects']} objects acquired, {n} planned, {summary['written']} written, "
          f"{summary['failed']} failed")
    print(f"build: {wall:.2f} s  ->  {n / wall:.1f} planned objects/s, {summary['written'] / wall:.1f} samples/s")
    for k, v in sorted(stages.items(), key=lambda kv: -kv[1]):
        print(f"  {k:45s} {v:7.2f} s  {100 * v / wall:5.1f} %")
    nread, tread = baseline_reads(out, imagery)
    if nread:
        print(f"baseline (same {nread} chips read straight from the source): {tread:.2f} s, "
              f"{nread / tread:.1f} chips/s; build/baseline time per sample = "
              f"{(wall / max(summary['written'], 1)) / (tread / nread):.2f}x")
    if summary["errors"]:
        print(f"failures: {summary['errors']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--osm")
    ap.add_argument("--imagery")
    ap.add_argument("--max-objects", type=int, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        inputs = [("given", args.osm, args.imagery)] if args.osm else default_inputs(tmp)
        for label, osm, imagery in inputs:
            run_one(label, osm, imagery, args.max_objects, tmp)


if __name__ == "__main__":
    main()
