"""The SkyScript-style build: objects → planned samples → shards.

Three steps, so Prefect and Dask can wrap each one: :func:`prepare_run` (acquire objects,
choose samples, plan shards, write run.json), :func:`run_shard` (a plain picklable function
over a :class:`ShardTask` and a :class:`WorkerContext`), :func:`finish_run` (summary).
Per-object failures become rows; anything else raised from a shard fails the shard.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
from shapely.geometry import Polygon, box
from shapely.ops import transform as shp_transform

from captioning.assemble import caption_multi, caption_single
from captioning.overlay import Overlay
from pipeline import runinfo
from pipeline.chips import plan_for_source
from pipeline.config import BuildConfig
from pipeline.errors import BadInputError, SkyScriptError
from pipeline.executors import map_shards
from pipeline.geo import BBox
from pipeline.imagery import make_imagery_source
from pipeline.osm import make_osm_source
from pipeline.records import ChipRequest, OsmObject, Pair
from pipeline.seams import ImagerySource, TagVisibility
from storage import shards as shard_io
from storage.objects_table import read_objects, write_objects
from tag_classifier.visibility import load_visibility

OUTPUT_NAMES = ("run.json", "objects.parquet", "shards", "scores", "selections")


@dataclass(frozen=True)
class BuildInputs:
    """Where things come from and go to (specs are strings so they pickle and log cleanly)."""

    osm: str
    imagery: str
    out: str
    bbox: BBox | None = None
    tag_model: str | None = None  # tag classifier folder or "auto"; None: caption.unknown_tags decides


@dataclass(frozen=True)
class WorkerContext:
    """Everything a shard worker needs; picklable for Dask workers."""

    out: str
    imagery: str
    tag_model: str | None
    cfg: BuildConfig


@dataclass(frozen=True)
class ShardTask:
    index: int
    keys: tuple[str, ...]


@dataclass
class RunPlan:
    inputs: BuildInputs
    cfg: BuildConfig
    context: WorkerContext
    tasks: list[ShardTask]
    run: dict[str, Any] = field(default_factory=dict)

    @property
    def pending(self) -> list[ShardTask]:
        shards_dir = Path(self.inputs.out) / "shards"
        return [t for t in self.tasks if not shard_io.is_done(shards_dir, t.index)]


# --------------------------------------------------------------------------- prepare


def _identity(inputs: BuildInputs, cfg: BuildConfig, osm_desc: dict, img_desc: dict, vis_desc: dict) -> dict:
    return {
        "config": cfg.to_dict(),
        "bbox": None if inputs.bbox is None else list(inputs.bbox.as_tuple()),
        "osm": osm_desc,
        "imagery": img_desc,
        "visibility": vis_desc,
    }


def _clear_outputs(out: Path) -> None:
    for name in OUTPUT_NAMES:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def select_samples(objs: list[OsmObject], vis: TagVisibility, cfg: BuildConfig) -> list[OsmObject]:
    """Objects worth a sample: at least one tag visible at some resolution; seeded subsample.

    Failed acquisition rows with visible tags are kept, so the shard parquet accounts for them.
    """
    prime = getattr(vis, "prime", None)  # optional: batch the model's predictions up front
    if prime is not None:
        prime(o.tags for o in objs)
    seen: set[str] = set()
    cands = []
    for o in objs:
        if o.key in seen:
            continue
        seen.add(o.key)
        if vis.visible_tags(o.tags, None):
            cands.append(o)
    if cfg.max_objects is not None and len(cands) > cfg.max_objects:
        rng = np.random.default_rng(cfg.seed)
        keep = np.sort(rng.choice(len(cands), size=cfg.max_objects, replace=False))
        cands = [cands[i] for i in keep]
    return cands


def prepare_run(
    inputs: BuildInputs,
    cfg: BuildConfig,
    *,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
    on_acquired: Callable[[int], None] | None = None,
) -> RunPlan:
    out = Path(inputs.out)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {str(out)!r} exists and is not a folder; choose a folder path.")
    osm_source = make_osm_source(inputs.osm, cfg.osm)
    imagery = make_imagery_source(inputs.imagery)
    if inputs.tag_model is None and cfg.caption.unknown_tags == "model":
        inputs = dataclasses.replace(inputs, tag_model="auto")
    vis = load_visibility(inputs.tag_model)
    identity = _identity(inputs, cfg, osm_source.describe(), imagery.describe(), vis.describe())
    fp = runinfo.fingerprint(identity)
    out.mkdir(parents=True, exist_ok=True)
    if overwrite:
        _clear_outputs(out)
    resuming = runinfo.check_compatible(out, fp)
    objects_path = out / "objects.parquet"
    t0 = time.perf_counter()
    if resuming and objects_path.is_file():
        objs = read_objects(objects_path)
        log(f"resuming: {len(objs)} objects from {objects_path}")
    else:
        objs = []
        for o in osm_source.objects(inputs.bbox):
            objs.append(o)
            if on_acquired is not None and len(objs) % 1000 == 0:
                on_acquired(len(objs))
        write_objects(objects_path, objs)
        log(f"acquired {len(objs)} OSM objects")
    acquire_s = time.perf_counter() - t0
    if not objs:
        where = f" inside bbox {inputs.bbox.as_tuple()}" if inputs.bbox else ""
        raise BadInputError(
            f"no tagged OSM objects in {inputs.osm!r}{where}. Check that the file covers the area "
            "and that --bbox is W,S,E,N in degrees."
        )
    chosen = select_samples(objs, vis, cfg)
    if not chosen:
        raise BadInputError(
            f"none of the {len(objs)} objects in {inputs.osm!r} has a tag visible from above "
            "(see tag_classifier/data/tag_labels.csv, or pass a trained --tag-model)."
        )
    size = cfg.shards.shard_size
    tasks = [
        ShardTask(i, tuple(o.key for o in chosen[j : j + size]))
        for i, j in enumerate(range(0, len(chosen), size))
    ]
    run = {
        "tool": "skyscript build",
        "fingerprint": fp,
        "created": (runinfo.read_run(out) or {}).get("created", runinfo.now_iso()),
        "inputs": {"osm": inputs.osm, "imagery": inputs.imagery, "out": str(out),
                   "tag_model": inputs.tag_model},
        "seed": cfg.seed,
        "versions": runinfo.versions(),
        "n_objects": len(objs),
        "n_planned": len(chosen),
        "n_shards": len(tasks),
        "acquire_seconds": round(acquire_s, 3),
        **identity,
    }
    runinfo.write_json_atomic(out / "run.json", run)
    shard_io.sweep_temporaries(out / "shards")
    ctx = WorkerContext(out=str(out), imagery=inputs.imagery, tag_model=inputs.tag_model, cfg=cfg)
    return RunPlan(inputs=inputs, cfg=cfg, context=ctx, tasks=tasks, run=run)


# --------------------------------------------------------------------------- shard worker


@dataclass
class _Resources:
    objects: dict[str, OsmObject]
    overlay: Overlay
    imagery: ImagerySource
    vis: TagVisibility


@lru_cache(maxsize=4)
def _resources(out: str, mtime_ns: int, imagery: str, tag_model: str | None) -> _Resources:
    """Per-process cache: a worker loads the objects table and builds the overlay once."""
    objs = read_objects(Path(out) / "objects.parquet")
    return _Resources(
        objects={o.key: o for o in objs},
        overlay=Overlay(o for o in objs if o.ok),
        imagery=make_imagery_source(imagery),
        vis=load_visibility(tag_model),
    )


@lru_cache(maxsize=64)
def _to_wgs84(crs: str) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)


def tile_polygon(req: ChipRequest) -> Polygon:
    """The request's tile as an exact WGS84 polygon (densified: UTM edges curve in lon/lat)."""
    edge = box(*req.bounds).segmentize(max(req.bounds[2] - req.bounds[0], 1.0) / 8)
    return shp_transform(_to_wgs84(req.crs).transform, edge)


def object_seed(seed: int, key: str) -> int:
    """Stable per-object seed (never Python's salted hash())."""
    return zlib.crc32(f"{seed}:{key}".encode())


def make_pair(obj: OsmObject, res: _Resources, cfg: BuildConfig, timers: Counter) -> Pair | str:
    """One object → a Pair, or the reason it could not become one."""
    if not obj.ok:
        return obj.error_message or "no usable geometry"
    t0 = time.perf_counter()
    # max_gsd lets the planner coarsen a too-large object only while it stays recognisable.
    planned = plan_for_source(obj, res.imagery, cfg.planner, cfg.seed, max_gsd=res.vis.max_gsd(obj.tags))
    t1 = time.perf_counter()
    timers["plan"] += t1 - t0
    if isinstance(planned, str):
        return planned
    visible = res.vis.visible_tags(obj.tags, planned.gsd)
    if not visible:
        return f"no visible tags: none of {sorted(obj.tags)} is recognisable at {planned.gsd:.3g} m"
    chip = res.imagery.read(planned)
    t2 = time.perf_counter()
    timers["read"] += t2 - t1
    # Ask for extra neighbours: some have no visible tags and caption_multi drops repeats.
    neighbours = res.overlay.around(obj, tile_polygon(planned), cfg.caption.max_surrounding * 4)
    surrounding = [t for t in (res.vis.visible_tags(n.tags, planned.gsd) for n in neighbours) if t]
    single = caption_single(visible)
    if not single:
        return f"no caption: the visible tags {sorted(visible)} have no caption phrase"
    pair = Pair(
        key=obj.key,
        obj=obj,
        chip=chip,
        visible_tags=visible,
        caption_single=single,
        caption_multi=caption_multi(visible, surrounding, max_surrounding=cfg.caption.max_surrounding),
        surrounding=surrounding[: cfg.caption.max_surrounding * 4],
    )
    timers["caption"] += time.perf_counter() - t2
    return pair


def run_shard(
    task: ShardTask, ctx: WorkerContext, on_object: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Write one shard. Idempotent: a finished shard is returned from its stats file."""
    out = Path(ctx.out)
    shards_dir = out / "shards"
    paths = shard_io.shard_paths(shards_dir, task.index)
    if paths["stats"].is_file():
        return json.loads(paths["stats"].read_text())
    objects_path = out / "objects.parquet"
    res = _resources(ctx.out, objects_path.stat().st_mtime_ns, ctx.imagery, ctx.tag_model)
    writer = shard_io.ShardWriter(shards_dir, task.index, ctx.cfg.shards.jpeg_quality)
    try:
        for key in task.keys:
            obj = res.objects[key]
            try:
                result = make_pair(obj, res, ctx.cfg, writer.stage_seconds)
            except SkyScriptError as exc:  # per-object: imagery gaps, unreadable windows, ...
                result = f"{type(exc).__name__}: {exc}"
            if isinstance(result, Pair):
                writer.add_pair(result)
            else:
                writer.add_failure(key, obj.osm_type, obj.osm_id, result)
            if on_object is not None:
                on_object()
        return writer.close()
    except BaseException:
        writer.abort()
        raise


# --------------------------------------------------------------------------- finish


def finish_run(plan: RunPlan) -> dict[str, Any]:
    out = Path(plan.inputs.out)
    shards_dir = out / "shards"
    stats = [json.loads(shard_io.shard_paths(shards_dir, t.index)["stats"].read_text())
             for t in plan.tasks if shard_io.is_done(shards_dir, t.index)]
    errors: Counter = Counter()
    stages: Counter = Counter()
    for s in stats:
        errors.update(s["errors"])
        stages.update(s.get("stage_seconds", {}))
    summary = {
        "shards_done": len(stats),
        "shards_total": len(plan.tasks),
        "planned": sum(len(t.keys) for t in plan.tasks),
        "written": sum(s["successes"] for s in stats),
        "failed": sum(s["failed"] for s in stats),
        "errors": dict(errors.most_common()),
        "stage_seconds": {k: round(v, 3) for k, v in sorted(stages.items())},
        "finished": runinfo.now_iso() if len(stats) == len(plan.tasks) else None,
    }
    plan.run["summary"] = summary
    runinfo.write_json_atomic(out / "run.json", plan.run)
    return summary


def build(
    inputs: BuildInputs,
    cfg: BuildConfig,
    *,
    overwrite: bool = False,
    executor: str = "local",
    log: Callable[[str], None] = print,
    on_object: Callable[[], None] | None = None,
    on_plan: Callable[[RunPlan], None] | None = None,
    on_shard: Callable[[dict[str, Any]], None] | None = None,
    on_acquired: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run the whole build; re-running resumes (finished shards are skipped)."""
    plan = prepare_run(inputs, cfg, overwrite=overwrite, log=log, on_acquired=on_acquired)
    if on_plan is not None:
        on_plan(plan)
    map_shards(run_shard, plan.pending, plan.context, executor=executor, on_object=on_object, on_shard=on_shard)
    return finish_run(plan)


def iter_keys(tasks: Iterable[ShardTask]) -> list[str]:
    return [k for t in tasks for k in t.keys]
