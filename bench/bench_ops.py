"""Operations overheads: the same build in-process (baseline), as the Prefect flow, and on a Dask
cluster (`dask scheduler` + 2 `dask worker` processes on loopback); then the report.

Prints objects/s for each route and its ratio to the in-process baseline measured in the same run,
checking that every route wrote the same samples. On the shared 2-core development machine the
numbers move by ±2×; the ratios are what to compare.

    .venv/bin/python bench/bench_ops.py [--objects 120] [--osm F --imagery local:DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.build import BuildInputs, build  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from storage import shards as sh  # noqa: E402

OAM = ROOT.parent / "shared" / "data" / "imagery" / "oam"
BIN = Path(sys.executable).parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _samples(out: Path) -> dict[str, bytes]:
    return {s["key"]: s["jpg"] for s in sh.iter_samples(out / "shards")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=120)
    ap.add_argument("--osm")
    ap.add_argument("--imagery")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_ops_"))
    os.environ.setdefault("PREFECT_HOME", str(tmp / "prefect_home"))
    for k, v in {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                 "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"}.items():
        os.environ.setdefault(k, v)  # a script, not library code: offline and quiet by default
    if args.osm:
        osm, imagery = args.osm, args.imagery
    elif OAM.is_dir():
        osm, imagery = str(OAM / "area2_buildings.osm"), f"local:{OAM}"
    else:
        from tests.fakes import make_fake_area

        area = make_fake_area(tmp / "fake", seed=0, n_buildings=args.objects, size_m=400.0)
        osm, imagery = str(area.osm), f"local:{area.imagery_dir}"
    cfg_file = tmp / "shards.yaml"
    cfg_file.write_text("shards:\n  shard_size: 20\n")
    cfg = load_config(cfg_file, max_objects=args.objects)
    print(f"input: {osm} ({imagery}), up to {args.objects} objects, 20 per shard")

    def run(name: str, executor: str = "local") -> float:
        return _timed(lambda: build(BuildInputs(osm=osm, imagery=imagery, out=str(tmp / name)), cfg,
                                    executor=executor, log=lambda _m: None))

    run("warm")  # imports, tag model, land mask: paid once, not by any route below
    base = run("local")
    n = len(sh.read_rows(tmp / "local" / "shards"))
    ref = _samples(tmp / "local")
    rows = [("in-process (baseline)", base, True)]

    from flows.build import build_skyscript_flow

    start_s = _timed(lambda: build_skyscript_flow(osm=osm, imagery=imagery, out=str(tmp / "flow_warm"),
                                                  max_objects=2, config=str(cfg_file)))
    print(f"first flow run (starts Prefect's ephemeral API server): {start_s:.1f} s")
    flow_s = _timed(lambda: build_skyscript_flow(osm=osm, imagery=imagery, out=str(tmp / "flow"),
                                                 max_objects=args.objects, config=str(cfg_file)))
    rows.append(("Prefect flow (ephemeral API)", flow_s, _samples(tmp / "flow") == ref))

    port = _port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    procs += [subprocess.Popen([str(BIN / "dask"), "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1",
                                "--no-dashboard"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
              for _ in range(2)]
    try:
        from dask.distributed import Client

        with Client(f"tcp://127.0.0.1:{port}", timeout="120s") as c:
            c.wait_for_workers(2, timeout=120)
        cluster_s = run("cluster", f"dask:tcp://127.0.0.1:{port}")
        rows.append(("Dask cluster, 2 workers", cluster_s, _samples(tmp / "cluster") == ref))
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)

    from pipeline.report.data import collect
    from pipeline.report.figures import coarse_land
    from pipeline.report.html import render

    coarse_land()  # cached after its first use
    report_s = _timed(lambda: render(collect(tmp / "local"), coarse_land()))

    print(f"{n} planned samples, {len(ref)} written")
    print(f"{'route':32s} {'seconds':>8s} {'objects/s':>10s} {'x baseline':>10s}  same samples")
    for name, secs, same in rows:
        print(f"{name:32s} {secs:8.2f} {n / secs:10.1f} {secs / base:10.2f}  {same}")
    print(f"report of {len(ref)} samples: {report_s:.2f} s")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
