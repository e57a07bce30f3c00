"""Prefect flow ``build-skyscript``: a thin wrapper over :mod:`pipeline.build`.

Acquisition/planning is one task and every shard is its own task, so Prefect retries
whole shards (per-object failures are rows, never task failures). In-process by default;
``executor`` hands the shards to Dask instead.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task

from pipeline.build import BuildInputs, RunPlan, ShardTask, WorkerContext, finish_run, prepare_run, run_shard
from pipeline.config import BuildConfig, load_config
from pipeline.geo import BBox


@task(name="prepare-run", retries=1, retry_delay_seconds=5)
def prepare_task(inputs: BuildInputs, cfg: BuildConfig, overwrite: bool) -> RunPlan:
    logger = get_run_logger()
    return prepare_run(inputs, cfg, overwrite=overwrite, log=logger.info)


@task(name="build-shard", retries=2, retry_delay_seconds=10, task_run_name="shard-{shard.index:05d}")
def shard_task(shard: ShardTask, ctx: WorkerContext) -> dict[str, Any]:
    return run_shard(shard, ctx)


@task(name="dask-shards")
def dask_task(plan: RunPlan, executor: str) -> None:
    from pipeline.executors import map_shards

    map_shards(run_shard, plan.pending, plan.context, executor=executor)


@flow(name="build-skyscript", log_prints=True)
def build_skyscript_flow(
    osm: str,
    imagery: str,
    out: str,
    bbox: str | None = None,
    max_objects: int | None = None,
    seed: int | None = None,
    config: str | None = None,
    preset: str = "default",
    tag_model: str | None = None,
    overwrite: bool = False,
    executor: str = "local",
) -> dict[str, Any]:
    """Build SkyScript-style shards (same arguments as ``skyscript build``)."""
    cfg = load_config(config, preset=preset, seed=seed, max_objects=max_objects)
    inputs = BuildInputs(osm=osm, imagery=imagery, out=out, bbox=BBox.parse(bbox) if bbox else None,
                         tag_model=tag_model)
    return _run(inputs, cfg, overwrite, executor)


def _run(inputs: BuildInputs, cfg: BuildConfig, overwrite: bool, executor: str) -> dict[str, Any]:
    plan = prepare_task(inputs, cfg, overwrite)
    if executor == "local":
        for shard in plan.pending:
            shard_task(shard, plan.context)
    else:
        dask_task(plan, executor)
    summary = finish_run(plan)
    get_run_logger().info("build finished: %s", summary)
    return summary
