"""Prefect flow ``build-graft``: a thin wrapper over :mod:`pipeline.graft.build`.

Planning is one task and every shard is its own task (Prefect retries whole shards; per-tile
failures are rows, never task failures). In-process by default; ``executor`` hands shards to Dask.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task

from pipeline.graft.build import (
    GraftBuildConfig,
    GraftContext,
    GraftInputs,
    GraftRunPlan,
    TileTask,
    finish_graft,
    prepare_graft,
    run_graft_shard,
)
from pipeline.graft.tiling import TilingConfig


@task(name="plan-graft", retries=1, retry_delay_seconds=5)
def prepare_task(inputs: GraftInputs, tiling: TilingConfig, cfg: GraftBuildConfig, overwrite: bool) -> GraftRunPlan:
    return prepare_graft(inputs, tiling, cfg, overwrite=overwrite, log=get_run_logger().info)


@task(name="graft-shard", retries=2, retry_delay_seconds=10, task_run_name="graft-shard-{shard.index:05d}")
def shard_task(shard: TileTask, ctx: GraftContext) -> dict[str, Any]:
    return run_graft_shard(shard, ctx)


@task(name="graft-dask-shards")
def dask_task(plan: GraftRunPlan, executor: str) -> None:
    from pipeline.executors import map_shards

    map_shards(run_graft_shard, plan.pending, plan.context, executor=executor)


@flow(name="build-graft", log_prints=True)
def build_graft_flow(inputs: GraftInputs, tiling: TilingConfig, cfg: GraftBuildConfig, overwrite: bool = False,
                     executor: str = "local") -> dict[str, Any]:
    """Build GRAFT-style shards (same arguments as ``skyscript build-graft``)."""
    plan = prepare_task(inputs, tiling, cfg, overwrite)
    if executor == "local":
        for shard in plan.pending:
            shard_task(shard, plan.context)
    else:
        dask_task(plan, executor)
    summary = finish_graft(plan)
    get_run_logger().info("build-graft finished: %s", summary)
    return summary


def run_graft_flow(inputs: GraftInputs, tiling: TilingConfig, cfg: GraftBuildConfig, *, overwrite: bool = False,
                   executor: str = "local") -> dict[str, Any]:
    return build_graft_flow(inputs, tiling, cfg, overwrite=overwrite, executor=executor)
