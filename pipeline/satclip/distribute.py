"""Sampling shards on Dask (``--executor dask-local[:N]`` or ``dask:tcp://HOST:PORT``).

Workers get a small picklable context — the config, the ``--imagery`` spec (reopened in each
worker: a folder scan or a STAC client), the output folder, and for ``--by scene`` the
driver's scene listing (so N workers do not repeat a search of thousands of items) — and run
whole shards through :func:`pipeline.satclip.sampler.run_shard_with`. Shards publish
themselves atomically, so the output is identical to an in-process run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.satclip.output import is_done, write_index
from pipeline.satclip.sampler import SampleConfig, Sampler, check_output, run_shard_with, sweep
from pipeline.satclip.scenes import Scene
from pipeline.satclip.sources import open_source


@dataclass(frozen=True)
class SampleContext:
    cfg: SampleConfig
    imagery: str
    out: str
    collection: str = "sentinel-2-l2a"
    max_scenes: int = 10_000
    workers: int = 1
    pool: tuple[Scene, ...] | None = None


def run_shard(shard_index: int, ctx: SampleContext, on_object: Callable[[], None] | None = None) -> dict[str, Any]:
    """One shard in a worker process (module-level and picklable, as the executors require)."""
    source = open_source(ctx.imagery, collection=ctx.collection, max_scenes=ctx.max_scenes)
    pool = list(ctx.pool) if ctx.pool is not None else None
    sampler = Sampler(ctx.cfg, source, pool=pool)
    with ThreadPoolExecutor(max_workers=ctx.workers) as threads:
        return run_shard_with(sampler, Path(ctx.out), shard_index, threads, on_object)


def sample_on(
    executor: str,
    cfg: SampleConfig,
    imagery: str,
    out: str | Path,
    collection: str = "sentinel-2-l2a",
    max_scenes: int = 10_000,
    workers: int = 1,
    on_shard: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Like :func:`pipeline.satclip.sampler.sample`, with shards spread over ``executor``."""
    from pipeline.executors import check_executor, map_shards

    check_executor(executor)
    out = Path(out)
    source = open_source(imagery, collection=collection, max_scenes=max_scenes)
    check_output(out, cfg, source)
    sweep(out)
    driver = Sampler(cfg, source)  # validates filters/region and builds the land-mask cache once
    pool = tuple(driver.pool) if cfg.by == "scene" else None
    ctx = SampleContext(cfg, imagery, str(out), collection, max_scenes, workers, pool)
    todo = [s for s in range(cfg.n_shards()) if not is_done(out / "shards", s)]
    results = map_shards(run_shard, todo, ctx, executor=executor, on_shard=on_shard)
    totals: Counter = Counter(skipped_shards=cfg.n_shards() - len(todo))
    errors: Counter = Counter()
    for stats in results:
        totals["ok"] += stats["successes"]
        totals["failed"] += stats["failed"]
        errors.update(stats["errors"])
    return {"written": dict(totals), "errors": dict(errors), "index_rows": write_index(out), "out": str(out)}
