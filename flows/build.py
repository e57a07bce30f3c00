"""Prefect flow ``build-skyscript``: the whole mission as thin tasks over :mod:`pipeline.build`.

plan + acquire OSM (one task: cells/targeted plans, a bbox or a file are all OSM source specs)
→ one task run per shard (tag visibility, chip plan, imagery, captions, shard files), retried
whole → finish (summary into run.json) → score → filter at each requested top fraction.
Scoring and filtering are skipped when ``score_model`` is null. Task results are small (paths
and counts, never pixels). Every parameter is validated before any task starts.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task

from flows import scoring
from flows.params import TOP_CHOICES, BuildParams, validate
from pipeline.build import BuildInputs, RunPlan, ShardTask, WorkerContext, finish_run, prepare_run, run_shard

SHARD_RETRIES = 2


@task(name="prepare-run", retries=1, retry_delay_seconds=5)
def prepare_task(inputs: BuildInputs, params: BuildParams) -> RunPlan:
    logger = get_run_logger()
    plan = prepare_run(inputs, params.cfg, overwrite=params.overwrite, log=logger.info)
    logger.info("%d shards planned, %d to do (%d objects)", len(plan.tasks), len(plan.pending),
                sum(len(t.keys) for t in plan.tasks))
    return plan


@task(name="build-shard", retries=SHARD_RETRIES, retry_delay_seconds=10, task_run_name="shard-{shard.index:05d}")
def shard_task(shard: ShardTask, ctx: WorkerContext) -> dict[str, Any]:
    stats = run_shard(shard, ctx)
    get_run_logger().info("shard %05d: %d written, %d failed %s", shard.index, stats.get("successes", 0),
                          stats.get("failed", 0), stats.get("errors") or "")
    return {k: stats[k] for k in ("successes", "failed", "count") if k in stats}


@task(name="dask-shards", retries=SHARD_RETRIES, retry_delay_seconds=10)
def dask_task(plan: RunPlan, executor: str) -> int:
    """All pending shards on a Dask cluster; a retry re-runs only shards without a done marker."""
    from pipeline.executors import map_shards

    logger = get_run_logger()
    pending = plan.pending
    done = [0]

    def on_shard(stats: dict[str, Any]) -> None:
        done[0] += 1
        logger.info("shard %d/%d finished on %s: %d written", done[0], len(pending), executor,
                    stats.get("successes", 0))

    map_shards(run_shard, pending, plan.context, executor=executor, on_shard=on_shard)
    return len(pending)


@task(name="finish-run")
def finish_task(plan: RunPlan) -> dict[str, Any]:
    return finish_run(plan)


@task(name="score", retries=1, retry_delay_seconds=10)
def score_task(out: str, score_model: str) -> str:
    scoring.run_step(scoring.score_args(out, score_model), get_run_logger().info)
    return f"{out}/scores"


@task(name="filter", task_run_name="filter-top{top}")
def filter_task(out: str, top: int) -> str:
    scoring.run_step(scoring.filter_args(out, top), get_run_logger().info)
    return f"{out}/selections/top{top:02d}.parquet"


@flow(name="build-skyscript", log_prints=True, validate_parameters=True)
def build_skyscript_flow(
    osm: str,
    imagery: str | list[str],
    out: str,
    bbox: str | None = None,
    max_objects: int | None = None,
    seed: int | None = None,
    config: str | None = None,
    preset: str = "default",
    executor: str = "local",
    score_model: str | None = None,
    top: int | list[int] = list(TOP_CHOICES),  # noqa: B006 - Prefect needs a JSON default, never mutated
    tag_model: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Build SkyScript-style shards (same parameters as ``skyscript build``), then score and filter.

    osm: OSM file (.osm.pbf/.osm/.osm.bz2/objects.parquet), pbf:FILE or overpass:URL.
    imagery: local:DIR, gee:PROJECT or stac:URL, or a list of them (the catalog picks per object).
    out: output folder; re-running with the same parameters resumes.
    score_model: open_clip model (e.g. ViT-L-14 or ViT-L-14:openai); null skips scoring and filtering.
    top: percentages kept by the filter step (default 20, 30, 50).
    """
    params = validate(osm=osm, imagery=imagery, out=out, bbox=bbox, max_objects=max_objects, seed=seed,
                      config=config, preset=preset, executor=executor, score_model=score_model, top=top,
                      tag_model=tag_model, overwrite=overwrite)
    return run_build(params)


def run_build(params: BuildParams) -> dict[str, Any]:
    inputs = BuildInputs(osm=params.osm, imagery=params.imagery, out=params.out, bbox=params.bbox,
                         tag_model=params.tag_model)
    plan = prepare_task(inputs, params)
    if params.executor == "local":
        for shard in plan.pending:
            shard_task(shard, plan.context)
    else:
        dask_task(plan, params.executor)
    summary = finish_task(plan)
    logger = get_run_logger()
    logger.info("build finished: %s", summary)
    if params.score_model is None:
        logger.info("score_model is null: scoring and filtering skipped")
        return summary
    score_task(params.out, params.score_model)
    summary["selections"] = [filter_task(params.out, t) for t in params.top]
    return summary
