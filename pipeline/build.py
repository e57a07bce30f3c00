"""The SkyScript-style build: objects → a persisted plan → shards.

Three steps, so Prefect and Dask can wrap each one: :func:`prepare_run` (acquire objects, make
the plan once and write it to ``OUT/plan/``, write run.json), :func:`run_shard` (a plain picklable
function over a :class:`ShardTask` and a :class:`WorkerContext`; it reads only its shard's plan
file), :func:`finish_run` (summary). Per-object failures become rows with a stable
``error_code``; anything else raised from a shard fails the shard.

A build's identity (fingerprint) is what decides its samples: the semantic config, the inputs'
content (not their paths), the labels and tag-model weights, the plan format. A resume with the
same identity follows the persisted plan exactly; any other refuses, naming what differs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyproj
from shapely.geometry import LineString, MultiLineString, Point, Polygon, box
from shapely.ops import transform as shp_transform

from captioning.assemble import caption_multi, caption_single
from captioning.overlay import Overlay
from pipeline import planning, runinfo
from pipeline.chips import plan_for_source, target_geometry
from pipeline.config import BuildConfig, ImageryConfig
from pipeline.errors import BadInputError, SkyScriptError
from pipeline.executors import map_shards
from pipeline.failures import (
    IMAGERY_ERROR,
    INVALID_GEOMETRY,
    NO_CAPTION,
    NO_VISIBLE_TAGS,
    NODATA,
    UNKNOWN,
    Failure,
)
from pipeline.geo import BBox
from pipeline.identity import source_identity, strip_locations
from pipeline.imagery import make_imagery_source
from pipeline.osm import make_osm_source
from pipeline.records import Chip, ChipRequest, OsmObject, Pair
from pipeline.seams import ImagerySource, TagVisibility
from storage import plan as plan_io
from storage import shards as shard_io
from storage.objects_table import ObjectsWriter
from storage.remote import RemoteOut
from tag_classifier.visibility import load_visibility

OUTPUT_NAMES = ("run.json", "objects.parquet", "plan", "shards", "scores", "selections", "embeddings")


@dataclass(frozen=True)
class BuildInputs:
    """Where things come from and go to (specs are strings so they pickle and log cleanly)."""

    osm: str
    imagery: str | tuple[str, ...]  # one spec, or several (--imagery repeated): the catalog router
    out: str
    bbox: BBox | None = None
    tag_model: str | None = None  # tag classifier folder or "auto"; None: caption.unknown_tags decides


@dataclass(frozen=True)
class WorkerContext:
    """Everything a shard worker needs; picklable for Dask workers.

    ``imagery_source`` is the source indexed once at prepare time (a raster folder is not
    re-indexed per worker); ``imagery`` (the spec) is the fallback when it is not passed.
    """

    out: str
    imagery: str | tuple[str, ...]
    tag_model: str | None
    cfg: BuildConfig
    imagery_source: Any = field(default=None, compare=False)
    tag_embedder: str = "minilm"  # the resolved embedder of the auto tag model (never "auto")


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
        remote = RemoteOut.for_out(self.inputs.out)
        if remote is not None:  # the done markers in object storage are the truth
            done = remote.done_shards()
            return [t for t in self.tasks if t.index not in done]
        shards_dir = Path(self.inputs.out) / "shards"
        return [t for t in self.tasks if not shard_io.is_done(shards_dir, t.index)]


# --------------------------------------------------------------------------- prepare


def build_identity(
    inputs: BuildInputs, cfg: BuildConfig, osm_source: Any, imagery: Any, vis: TagVisibility
) -> dict[str, Any]:
    """What decides the samples (hashed into the fingerprint; stored in run.json to explain refusals)."""
    return {
        "plan_format": plan_io.PLAN_FORMAT,
        "config": cfg.semantic(),
        "bbox": None if inputs.bbox is None else list(inputs.bbox.as_tuple()),
        "osm": source_identity(osm_source),
        "imagery": source_identity(imagery),
        "visibility": strip_locations(vis.describe()),
    }


def check_out(out_arg: str) -> Path:
    """The output folder, created; a one-line error when it cannot be used.

    For ``s3://`` the bucket must answer and take a write; the local staging folder is returned."""
    remote = RemoteOut.for_out(out_arg)
    out = Path(out_arg) if remote is None else remote.check()
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {str(out)!r} exists and is not a folder; choose a folder path.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInputError(
            f"--out {str(out)!r} cannot be created ({exc.strerror or exc}); choose a writable folder."
        ) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise BadInputError(f"--out {str(out)!r} is not writable; choose a writable folder.")
    return out


def _clear_outputs(out: Path) -> None:
    for name in OUTPUT_NAMES:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _acquire(osm_source: Any, inputs: BuildInputs, path: Path, on_acquired: Callable[[int], None] | None) -> int:
    """Stream the source's objects into ``objects.parquet`` (atomic; never all in memory)."""
    with ObjectsWriter(path) as writer:
        n = 0
        for o in osm_source.objects(inputs.bbox):
            writer.write(o)
            n += 1
            if on_acquired is not None and n % 1000 == 0:
                on_acquired(n)
    return n


def make_plan(
    out: Path, cfg: BuildConfig, vis: TagVisibility, inputs: BuildInputs, source_gsd: float | None = None
) -> list[tuple[str, ...]]:
    """Select, order and shard the samples; write each shard's inputs, then the index (last)."""
    scan = planning.scan_objects(str(out / "objects.parquet"), vis)
    if scan.table.num_rows == 0:
        where = f" inside bbox {inputs.bbox.as_tuple()}" if inputs.bbox else ""
        raise BadInputError(
            f"no tagged OSM objects in {inputs.osm!r}{where}. Check that the file covers the area "
            "and that --bbox is W,S,E,N in degrees."
        )
    order = planning.select(scan, cfg)
    if len(order) == 0:
        raise BadInputError(
            f"none of the {scan.table.num_rows} objects in {inputs.osm!r} has a tag visible from above "
            "(see tag_classifier/data/tag_labels.csv, or pass a trained --tag-model)."
        )
    index = planning.NeighbourIndex(scan)
    keys_col = scan.table.column("key")
    shards: list[list[str]] = []
    for i, rows in enumerate(planning.shard_rows(order, cfg.shards.shard_size)):
        keys = [keys_col[int(r)].as_py() for r in rows]
        needed = planning.shard_input_rows(scan, rows, index, cfg, source_gsd)
        plan_io.write_shard_inputs(out, i, scan.table.take(needed), keys)
        shards.append(keys)
    plan_io.write_index(out, shards)
    return [tuple(k) for k in shards]


def prepare_run(
    inputs: BuildInputs,
    cfg: BuildConfig,
    *,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
    on_acquired: Callable[[int], None] | None = None,
) -> RunPlan:
    out = check_out(inputs.out)
    remote = RemoteOut.for_out(inputs.out)  # s3://: `out` is its local staging mirror
    if remote is not None:
        remote.pull(overwrite=overwrite)
    osm_source = make_osm_source(inputs.osm, cfg.osm)
    imagery = make_imagery_source(inputs.imagery, cfg.imagery)
    if inputs.tag_model is None and cfg.caption.unknown_tags == "model":
        inputs = dataclasses.replace(inputs, tag_model="auto")
    embedder = _tag_embedder(out, inputs, cfg)
    vis = load_visibility(inputs.tag_model, embedder=embedder)
    identity = build_identity(inputs, cfg, osm_source, imagery, vis)
    fp = runinfo.fingerprint(identity)
    if overwrite:
        _clear_outputs(out)
        if remote is not None:
            remote.clear()
    resuming = runinfo.check_compatible(out, fp, identity)
    prev = runinfo.read_run(out) if resuming else None
    run: dict[str, Any] = {
        "tool": "skyscript build",
        "fingerprint": fp,
        "created": (prev or {}).get("created", runinfo.now_iso()),
        "inputs": {"osm": inputs.osm, "imagery": inputs.imagery, "out": inputs.out if remote else str(out),
                   "tag_model": inputs.tag_model},
        "seed": cfg.seed,
        "versions": runinfo.versions(),
        "config": cfg.to_dict(),
        "sources": {"osm": osm_source.describe(), "imagery": imagery.describe(), "visibility": vis.describe()},
        "identity": identity,
    }
    for k in ("n_objects", "n_planned", "n_shards", "acquire_seconds", "plan_seconds", "tag_classifier"):
        if prev and k in prev:
            run[k] = prev[k]
    runinfo.write_json_atomic(out / "run.json", run)  # claims the folder before any other output
    keys = plan_io.read_index(out) if resuming else None
    if keys is not None:
        log(f"resuming: following the plan in {out / plan_io.PLAN_DIR} ({len(keys)} shards)")
    else:
        try:
            keys = _plan_fresh(out, inputs, cfg, osm_source, imagery, vis, run, resuming, log, on_acquired)
        except SkyScriptError:
            if not resuming:  # nothing of an earlier build was here: leave the folder as it was
                _clear_outputs(out)
            raise
    tasks = [ShardTask(i, ks) for i, ks in enumerate(keys)]
    run.update(n_planned=sum(len(t.keys) for t in tasks), n_shards=len(tasks))
    embedder = _record_embedder(run, vis, embedder)
    runinfo.write_json_atomic(out / "run.json", run)
    if remote is not None:
        remote.push_prepared()
    shard_io.sweep_temporaries(out / "shards")
    ctx = WorkerContext(out=inputs.out if remote else str(out), imagery=inputs.imagery, tag_model=inputs.tag_model,
                        cfg=cfg, imagery_source=imagery, tag_embedder=embedder)
    return RunPlan(inputs=inputs, cfg=cfg, context=ctx, tasks=tasks, run=run)


def _tag_embedder(out: Path, inputs: BuildInputs, cfg: BuildConfig) -> str:
    """The embedder of the default tag model: the configured one, or for ``auto`` the decision an
    earlier run of this build recorded (so a CLIP download between two runs never changes the model a
    build was planned with). Otherwise ``auto`` stays undecided until a tag actually needs the model:
    builds whose tags are all labelled never look for CLIP weights."""
    wanted = cfg.tag_classifier.embedder
    if inputs.tag_model != "auto" or wanted != "auto":
        return wanted
    try:
        prev = runinfo.read_run(out) or {}
    except SkyScriptError:
        prev = {}  # an unreadable run.json is refused a moment later, naming it
    recorded = (prev.get("tag_classifier") or {}).get("embedder")
    return str(recorded) if recorded in ("clip", "minilm") else wanted


def _record_embedder(run: dict[str, Any], vis: TagVisibility, embedder: str) -> str:
    """Write the tag model's embedder (and why) into run.json; the concrete name for the workers."""
    from tag_classifier.auto_model import AutoModel

    model = getattr(vis, "model", None)
    if not isinstance(model, AutoModel):
        return embedder  # labels only, or a trained --tag-model folder that names its own embedder
    resolved = model.embedder
    if resolved == "auto":
        run.setdefault("tag_classifier", {"embedder": None, "reason": "not needed yet: every tag so far is labelled"})
        return "auto"
    reason = getattr(model, "reason", "") or (run.get("tag_classifier") or {}).get("reason") or "configured"
    run["tag_classifier"] = {"embedder": resolved, "reason": reason}
    return str(resolved)


def _plan_fresh(
    out: Path, inputs: BuildInputs, cfg: BuildConfig, osm_source: Any, imagery: Any, vis: TagVisibility,
    run: dict[str, Any], resuming: bool, log: Callable[[str], None], on_acquired: Callable[[int], None] | None,
) -> list[tuple[str, ...]]:
    objects_path = out / "objects.parquet"
    t0 = time.perf_counter()
    if resuming and objects_path.is_file():
        log(f"resuming: objects from {objects_path}")
    else:
        n = _acquire(osm_source, inputs, objects_path, on_acquired)
        run["n_objects"] = n
        log(f"acquired {n} OSM objects")
    run["acquire_seconds"] = round(time.perf_counter() - t0, 3)
    t1 = time.perf_counter()
    coarsest = getattr(imagery, "coarsest_gsd", None)
    keys = make_plan(out, cfg, vis, inputs, coarsest() if callable(coarsest) else None)
    run["plan_seconds"] = round(time.perf_counter() - t1, 3)
    return keys


# --------------------------------------------------------------------------- shard worker


@dataclass
class _Resources:
    imagery: ImagerySource
    vis: TagVisibility


@lru_cache(maxsize=4)
def _visibility(tag_model: str | None, embedder: str) -> TagVisibility:
    return load_visibility(tag_model, embedder=embedder)


@lru_cache(maxsize=4)
def _imagery_from_spec(spec: str | tuple[str, ...], cfg: ImageryConfig) -> ImagerySource:
    return make_imagery_source(spec, cfg)


def _resources(ctx: WorkerContext) -> _Resources:
    """Per-process: the source handed over by the planner (else from its spec), the tag visibility."""
    imagery = ctx.imagery_source
    if imagery is None:
        imagery = _imagery_from_spec(ctx.imagery, ctx.cfg.imagery)
    return _Resources(imagery=imagery, vis=_visibility(ctx.tag_model, ctx.tag_embedder))


@lru_cache(maxsize=64)
def _to_wgs84(crs: str) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)


def tile_polygon(req: ChipRequest) -> Polygon:
    """The request's tile as an exact WGS84 polygon (densified: UTM edges curve in lon/lat)."""
    edge = box(*req.bounds).segmentize(max(req.bounds[2] - req.bounds[0], 1.0) / 8)
    return shp_transform(_to_wgs84(req.crs).transform, edge)


def chip_centre(req: ChipRequest) -> tuple[float, float]:
    """The chip grid's centre in WGS84 lon/lat (what ``lon``/``lat`` mean in ``{key}.json``)."""
    x0, y0, x1, y1 = req.bounds
    lon, lat = _to_wgs84(req.crs).transform((x0 + x1) / 2.0, (y0 + y1) / 2.0)
    return float(lon), float(lat)


def object_point(obj: OsmObject, seed: int) -> tuple[float, float]:
    """A point on the object: the node, the line's vertex the tile is centred on, or a point
    inside the polygon (``representative_point``, never outside it as a centroid can be)."""
    geom = obj.geometry
    assert geom is not None
    if isinstance(geom, LineString | MultiLineString):
        target = target_geometry(obj, seed)
        if isinstance(target, Point):
            return float(target.x), float(target.y)
    p = geom if isinstance(geom, Point) else geom.representative_point()
    return float(p.x), float(p.y)


def empty_fraction(chip: Chip) -> float:
    """The chip's share of pixels without data: what the source measured, else all-black pixels."""
    measured = chip.provenance.get("empty_fraction")
    if measured is not None:
        return float(measured)
    return float((chip.pixels.max(axis=2) == 0).mean()) if chip.pixels.size else 1.0


def plan_chips(obj: OsmObject, res: _Resources, cfg: BuildConfig) -> list[ChipRequest] | Failure:
    """The chips of one object: one per collection chosen (``imagery.images_per_object``), or why none."""
    # max_gsd lets the planner coarsen a too-large object only while it stays recognisable.
    max_gsd = res.vis.max_gsd(obj.tags)
    choose = getattr(res.imagery, "plan", None)  # the catalog router: a collection per object
    if callable(choose):
        chosen = choose(obj, cfg.planner, cfg.seed, max_gsd=max_gsd)
        if isinstance(chosen, str):
            return chosen if isinstance(chosen, Failure) else Failure(UNKNOWN, chosen)
        return list(chosen)
    planned = plan_for_source(obj, res.imagery, cfg.planner, cfg.seed, max_gsd=max_gsd)
    return planned if isinstance(planned, Failure) else [planned]


def make_pairs(
    obj: OsmObject, overlay: Overlay, res: _Resources, cfg: BuildConfig, timers: MutableMapping[str, float]
) -> list[tuple[str, Pair | Failure]]:
    """One object → ``(key, Pair or the reason it failed)`` per planned chip (one row for an object
    that gets no chip at all). Keys: the object's, then ``key_1``, ``key_2`` for further collections."""
    if not obj.ok:
        return [(obj.key, Failure(INVALID_GEOMETRY, obj.error_message or "no usable geometry"))]
    t0 = time.perf_counter()
    planned = plan_chips(obj, res, cfg)
    timers["plan"] += time.perf_counter() - t0
    if isinstance(planned, Failure):
        return [(obj.key, planned)]
    out: list[tuple[str, Pair | Failure]] = []
    for req in planned:
        try:
            out.append((req.key, make_pair(obj, req, overlay, res, cfg, timers)))
        except SkyScriptError as exc:  # per chip: imagery gaps, unreadable windows, service errors
            out.append((req.key, Failure(getattr(exc, "code", IMAGERY_ERROR), f"{type(exc).__name__}: {exc}")))
    return out


def make_pair(
    obj: OsmObject,
    planned: ChipRequest,
    overlay: Overlay,
    res: _Resources,
    cfg: BuildConfig,
    timers: MutableMapping[str, float],
) -> Pair | Failure:
    """One planned chip of an object → a Pair, or the reason (with its code) it could not become one."""
    t1 = time.perf_counter()
    visible = res.vis.visible_tags(obj.tags, planned.gsd)
    if not visible:
        return Failure(NO_VISIBLE_TAGS, f"no visible tags: none of {sorted(obj.tags)} is recognisable at "
                       f"{planned.gsd:.3g} m")
    single = caption_single(visible)
    if not single:
        return Failure(NO_CAPTION, f"no caption: the visible tags {sorted(visible)} have no caption phrase")
    chip = res.imagery.read(planned)
    t2 = time.perf_counter()
    timers["read"] += t2 - t1
    empty = empty_fraction(chip)
    if empty > cfg.imagery.max_nodata_frac:
        return Failure(NODATA, f"chip is {empty:.1%} empty (no data) in {chip.image_id}, above "
                       f"imagery.max_nodata_frac = {cfg.imagery.max_nodata_frac:g}")
    # Ask for extra neighbours: some have no visible tags and caption_multi drops repeats.
    neighbours = overlay.around(obj, tile_polygon(planned), cfg.caption.max_surrounding * 4)
    surrounding = [t for t in (res.vis.visible_tags(n.tags, planned.gsd) for n in neighbours) if t]
    pair = Pair(
        key=planned.key,
        obj=obj,
        chip=chip,
        visible_tags=visible,
        caption_single=single,
        caption_multi=caption_multi(visible, surrounding, max_surrounding=cfg.caption.max_surrounding),
        surrounding=surrounding[: cfg.caption.max_surrounding * 4],
        centre=chip_centre(planned),
        object_point=object_point(obj, cfg.seed),
    )
    timers["caption"] += time.perf_counter() - t2
    return pair


def run_shard(
    task: ShardTask, ctx: WorkerContext, on_object: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Write one shard from its plan file. Idempotent: a finished shard is returned from its stats file."""
    remote = RemoteOut.for_out(ctx.out)  # s3://: written in staging, then uploaded (stats last)
    if remote is not None:
        done = remote.shard_stats(task.index)
        if done is not None:
            return done
        remote.fetch_plan(task.index)  # a worker without a shared filesystem
    out = Path(ctx.out) if remote is None else remote.staging
    shards_dir = out / "shards"
    paths = shard_io.shard_paths(shards_dir, task.index)
    if remote is None and paths["stats"].is_file():
        return json.loads(paths["stats"].read_text())
    planned, inputs = plan_io.read_shard_inputs(out, task.index)
    if tuple(o.key for o in planned) != tuple(task.keys):
        raise SkyScriptError(f"shard {task.index}: the task's keys differ from the persisted plan in {out}")
    res = _resources(ctx)
    overlay = Overlay(inputs)
    writer = shard_io.ShardWriter(shards_dir, task.index, ctx.cfg.shards.jpeg_quality)
    try:
        for obj in planned:
            for key, result in make_pairs(obj, overlay, res, ctx.cfg, writer.stage_seconds):
                if isinstance(result, Pair):
                    writer.add_pair(result)
                else:
                    writer.add_failure(key, obj.osm_type, obj.osm_id, result, error_code=result.code)
            if on_object is not None:
                on_object()
        stats = writer.close()
    except BaseException:
        writer.abort()
        raise
    if remote is not None:
        remote.push_shard(task.index)
    return stats


# --------------------------------------------------------------------------- finish


def finish_run(plan: RunPlan) -> dict[str, Any]:
    remote = RemoteOut.for_out(plan.inputs.out)
    out = Path(plan.inputs.out) if remote is None else remote.staging
    shards_dir = out / "shards"
    if remote is not None:
        stats = remote.read_stats([t.index for t in plan.tasks])
    else:
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
    if remote is not None:
        remote.push_run()
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
