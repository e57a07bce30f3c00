"""Cost of ``--out s3://`` against a local ``--out`` folder: the same build, both ways, in one run.

The S3 side is moto's server on loopback (started here, IAM auth off), so the ratio is the staging
mirror's own overhead (uploads of tar/parquet/stats per shard, the remote done-marker checks, the
plan upload), not a real network's bandwidth. Also timed: the resume of a finished build (every
shard skipped through the remote markers) and the bucket probe at start-up.

    .venv/bin/python bench/bench_s3_out.py                 # fake area, 150 buildings, shards of 16
    .venv/bin/python bench/bench_s3_out.py --buildings 300 --shard-size 32
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.build import BuildInputs, build  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from storage.remote import RemoteOut  # noqa: E402
from tests.fakes import make_fake_area  # noqa: E402

BUCKET = "skyscript-bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto_server did not start")


def timed(fn: object, *args: object, **kw: object) -> tuple[float, dict]:
    t0 = time.perf_counter()
    res = fn(*args, **kw)  # type: ignore[operator]
    return time.perf_counter() - t0, res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--buildings", type=int, default=150)
    ap.add_argument("--shard-size", type=int, default=16)
    args = ap.parse_args()
    proc, endpoint = start_moto()
    try:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                              AWS_DEFAULT_REGION="us-east-1", SKYSCRIPT_CACHE=str(tmp / "cache"))
            import boto3

            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
            area = make_fake_area(tmp / "area", seed=0, n_buildings=args.buildings, size_m=400.0)
            cfg = load_config(preset="tiny")
            cfg = cfg.replace(caption=dataclasses.replace(cfg.caption, unknown_tags="drop"),
                              shards=dataclasses.replace(cfg.shards, shard_size=args.shard_size))

            def run(out: str) -> tuple[float, dict]:
                return timed(build, BuildInputs(str(area.osm), f"local:{area.imagery_dir}", out), cfg,
                             log=lambda _m: None)

            run(str(tmp / "warm"))  # imports, tag labels, raster index: paid once, outside the timings
            t_local, s_local = run(str(tmp / "local"))
            url = f"s3://{BUCKET}/bench"
            t_s3, s_s3 = run(url)
            t_resume, _ = run(url)
            t_local_resume, _ = run(str(tmp / "local"))
            t_probe, _ = timed(lambda: {"dir": RemoteOut(url).check()})
            assert s_s3["written"] == s_local["written"], (s_s3, s_local)
            n = s_local["planned"]
            print(f"{n} objects, {s_local['written']} samples, {s_local['shards_total']} shards of {args.shard_size}")
            print(f"local --out       : {t_local:6.2f} s  {n / t_local:7.1f} objects/s  (baseline)")
            print(f"s3:// --out (moto): {t_s3:6.2f} s  {n / t_s3:7.1f} objects/s  ratio s3/local = "
                  f"{t_s3 / t_local:.2f}x time")
            print(f"resume, all done  : local {t_local_resume:.2f} s, s3 {t_resume:.2f} s")
            print(f"bucket probe      : {t_probe * 1000:.0f} ms")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
