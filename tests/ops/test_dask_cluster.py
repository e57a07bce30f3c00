"""``--executor dask:tcp://HOST:PORT`` on a real cluster: `dask scheduler` + 2 `dask worker` processes.

The cluster build must give exactly the in-process samples, and the Overpass slot limit must hold
across every worker of the cluster even when the workers share no lock files.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pipeline.build import BuildInputs, build
from pipeline.config import load_config
from storage import shards as sh
from tests.fakes import FakeArea
from tests.ops.conftest import BIN, ROOT, child_env, free_port, stop
from tests.osm.conftest import synthetic_elements
from tests.osm.overpass_server import OverpassFixture

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # a loaded CI machine starts servers slowly
SKYSCRIPT = [sys.executable, "-m", "pipeline.cli"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from dask.distributed import Client

    tmp = tmp_path_factory.mktemp("dask")
    env = child_env(tmp / "home")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], env=env, cwd=tmp, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=(tmp / "scheduler.log").open("wb"))]
    for i in range(2):
        procs.append(subprocess.Popen(
            [str(BIN / "dask"), "worker", address, "--nthreads", "4", "--nworkers", "1", "--no-dashboard",
             "--name", f"w{i}", "--local-directory", str(tmp / f"w{i}")],
            env=env, cwd=tmp, start_new_session=True, stdout=subprocess.DEVNULL,
            stderr=(tmp / f"worker{i}.log").open("wb")))
    try:
        with Client(address, timeout="120s") as client:
            client.wait_for_workers(2, timeout=180)
        yield address
    finally:
        for p in reversed(procs):
            stop(p)


def test_cluster_build_equals_in_process(cluster: str, ops_area: FakeArea, tmp_path: Path) -> None:
    cfg_file = tmp_path / "small.yaml"
    cfg_file.write_text("shards:\n  shard_size: 3\n")
    local = tmp_path / "local"
    cfg = load_config(cfg_file, preset="tiny", max_objects=12)
    build(BuildInputs(osm=str(ops_area.osm), imagery=f"local:{ops_area.imagery_dir}", out=str(local)), cfg,
          log=lambda _m: None)
    dist = tmp_path / "dask"
    res = subprocess.run(
        [*SKYSCRIPT, "build", "--osm", str(ops_area.osm), "--imagery", f"local:{ops_area.imagery_dir}", "--out",
         str(dist), "--preset", "tiny", "--max-objects", "12", "--config", str(cfg_file), "--executor",
         f"dask:{cluster}"],
        env=child_env(tmp_path / "home"), capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    a = {s["key"]: s for s in sh.iter_samples(local / "shards")}
    b = {s["key"]: s for s in sh.iter_samples(dist / "shards")}
    assert len(sh.done_shards(dist / "shards")) == 4 and len(a) > 0
    assert a.keys() == b.keys()
    for k in a:
        assert a[k]["jpg"] == b[k]["jpg"], k
        assert a[k]["txt"] == b[k]["txt"] and a[k]["json"] == b[k]["json"], k
    assert sh.read_rows(local / "shards").equals(sh.read_rows(dist / "shards"))


def fetch_with_own_slot_dir(endpoint: str, slot_dir: str, n: int, cluster_slots: bool | None) -> int:
    """Run on a Dask worker: ``n`` concurrent queries with a slot folder no other task shares."""
    from pipeline.osm.overpass import OverpassConfig
    from pipeline.osm.overpass_client import OverpassClient
    from pipeline.osm.slots import EndpointSlots

    cfg = OverpassConfig(endpoints=(endpoint,), slots_per_endpoint=2, cache_dir=None, slot_dir=slot_dir,
                         attempts=1, socket_timeout_s=10, read_deadline_s=20)
    client = OverpassClient(cfg)
    client.slots = EndpointSlots(slot_dir, 2, cluster=cluster_slots)
    query = '[out:json];node["amenity"](59.9,23.9,60.1,24.1);out;'
    with ThreadPoolExecutor(n) as pool:
        return sum(len(r) for r in pool.map(lambda _: client.fetch(query), range(n)))


@pytest.mark.parametrize("cluster_slots", [None, False])
def test_overpass_slots_hold_across_the_cluster(cluster: str, tmp_path: Path, cluster_slots: bool | None) -> None:
    """None: the default on a Dask worker (the cluster semaphore); False: machine-local locks only."""
    from dask.distributed import Client

    with OverpassFixture(synthetic_elements(), slots=2) as fx, Client(cluster, timeout="60s") as client:
        fx.state.latency_s = 0.2
        futures = [client.submit(fetch_with_own_slot_dir, fx.endpoint, str(tmp_path / f"slots{i}"), 2,
                                 cluster_slots, pure=False) for i in range(4)]
        errors = [f.exception() for f in futures]
        peak = fx.state.max_in_flight
    if cluster_slots is None:
        assert errors == [None] * 4 and peak <= 2
        assert fx.state.counts["interpreter"] == 8 and fx.state.counts["429"] == 0
    else:  # the control: without the cluster semaphore, 8 queries from 4 slot folders overrun the server
        assert peak > 2


def test_unreachable_scheduler_is_one_line(ops_area: FakeArea, tmp_path: Path) -> None:
    t0 = time.monotonic()
    res = subprocess.run(
        [*SKYSCRIPT, "build", "--osm", str(ops_area.osm), "--imagery", f"local:{ops_area.imagery_dir}", "--out",
         str(tmp_path / "o"), "--preset", "tiny", "--executor", f"dask:tcp://127.0.0.1:{free_port()}"],
        env=child_env(tmp_path / "home"), capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "no Dask scheduler answers" in res.stderr and "Traceback" not in res.stderr
    assert time.monotonic() - t0 < 100


def hold_request_slots(folder: str, n: int) -> list[tuple[float, float]]:
    """Run on a Dask worker: ``n`` threads each hold an Earth Engine request slot for 0.2 s."""
    from pipeline.imagery.slots import RequestSlots

    slots = RequestSlots(Path(folder), "http://ee.fixture/api", limit=2)

    def one(_: int) -> tuple[float, float]:
        with slots.hold(max_wait_s=60):
            start = time.time()
            time.sleep(0.2)
            return start, time.time()

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_earth_engine_request_slots_hold_across_the_cluster(cluster: str, tmp_path: Path) -> None:
    from dask.distributed import Client

    with Client(cluster, timeout="60s") as client:
        futures = [client.submit(hold_request_slots, str(tmp_path / f"ee{i}"), 2, pure=False) for i in range(4)]
        spans = [s for f in futures for s in f.result()]
    assert len(spans) == 8
    assert max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans) <= 2


def dies_mid_shard(task: Any, ctx: Any, on_object: Any = None) -> dict[str, Any]:
    """Shard worker whose process dies after two objects of shard 1, the first time only."""
    import os

    from pipeline.build import run_shard

    marker = Path(ctx.out).parent / "died-once"
    if task.index == 1 and not marker.exists():
        marker.write_text("x")
        seen = [0]

        def die_after_two() -> None:
            seen[0] += 1
            if seen[0] == 2:
                os._exit(1)  # the whole worker process, mid-shard, no clean-up

        return run_shard(task, ctx, die_after_two)
    return run_shard(task, ctx, on_object)


def test_worker_dying_mid_shard_is_retried_without_partial_shards(
    cluster: str, ops_area: FakeArea, tmp_path: Path
) -> None:
    from pipeline.build import finish_run, prepare_run
    from pipeline.executors import map_shards

    cfg_file = tmp_path / "small.yaml"
    cfg_file.write_text("shards:\n  shard_size: 3\n")
    cfg = load_config(cfg_file, preset="tiny", max_objects=9)
    inputs = {"osm": str(ops_area.osm), "imagery": f"local:{ops_area.imagery_dir}"}
    clean = tmp_path / "clean" / "out"
    build(BuildInputs(**inputs, out=str(clean)), cfg, log=lambda _m: None)
    out = tmp_path / "dying" / "out"
    plan = prepare_run(BuildInputs(**inputs, out=str(out)), cfg, log=lambda _m: None)
    map_shards(dies_mid_shard, plan.pending, plan.context, executor=f"dask:{cluster}")
    assert (out.parent / "died-once").exists()
    assert finish_run(plan)["shards_done"] == 3
    a = {s["key"]: s for s in sh.iter_samples(clean / "shards")}
    b = {s["key"]: s for s in sh.iter_samples(out / "shards")}
    assert a.keys() == b.keys() and all(a[k]["jpg"] == b[k]["jpg"] for k in a)
    keys = [r["key"] for r in sh.read_rows(out / "shards").to_pylist()]
    assert len(keys) == len(set(keys)) == 9
    # Whatever the dead process left is a temporary, never a shard that looks finished.
    assert all(sh.TMP_MARK in p.name for p in (out / "shards").iterdir()
               if not any(p.name.startswith(f"{i:05d}") for i in range(3)))
