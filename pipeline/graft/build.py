"""``build-graft``: photos → plan → satellite tiles (via the imagery seam) → webdataset shards.

Each sample holds one satellite image fetched at ``fetch_scale`` × the tile size around the tile
centre (``{key}.sat.jpg``), its ground photos (``{key}.gNN.jpg``, shorter side 256) and
``{key}.json`` (photo ids, pixel offsets in the fetched image and in the tile, dates, the date gap
between the tile date and the acquisition, provenance). Same contract as the SkyScript build:
a shard is done iff its stats file exists; re-running resumes; a different config in the same
``--out`` is refused unless ``overwrite``; per-tile failures are rows with an ``error_code``.

Pick rules: ``most-recent`` (NAIP) ignores the tile date; ``closest-to-date`` (Sentinel-2) sends
the tile date as ``ChipRequest.date`` (the source picks the clearest scene closest to it under its
cloud threshold), and undated tiles fail with ``no_date``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pyproj import Transformer

from pipeline.errors import BadInputError, ImageryError, OutputConflictError, require_local_out
from pipeline.graft.fetch import PhotoFetcher
from pipeline.graft.photos import ColumnSpec
from pipeline.graft.plan import PLAN_FILES, is_plan_dir, read_plan, write_plan
from pipeline.graft.tiling import TilingConfig, plan_tiles
from pipeline.graft.writer import GraftShardWriter, done_shards, encode_jpeg, is_done, read_rows, sweep_temporaries
from pipeline.records import ChipRequest
from pipeline.seams import ImagerySource
from storage.atomic import publishing

PICKS = ("auto", "most-recent", "closest-to-date")
_CODE = re.compile(r"^([a-z][a-z_]{2,30}):")


@dataclass(frozen=True)
class GraftBuildConfig:
    collection: str = "naip"  # the imagery collection id (a catalog id for stac/gee sources)
    pick: str = "auto"  # auto: closest-to-date for Sentinel-2-like ids, else most-recent
    fetch_scale: int = 2  # fetch this many times the tile size (room for crop augmentation)
    photo_short_side: int = 256
    jpeg_quality: int = 90
    shard_size: int = 64  # tiles per shard
    metadata_only: bool = False  # keep ids and offsets only; no photo pixels
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pick not in PICKS:
            raise BadInputError(f"--pick must be one of {', '.join(PICKS)}, got {self.pick!r}")
        if self.fetch_scale < 1:
            raise BadInputError(f"--fetch-scale must be at least 1, got {self.fetch_scale}")
        if self.shard_size < 1:
            raise BadInputError(f"--shard-size must be at least 1, got {self.shard_size}")

    @property
    def rule(self) -> str:
        if self.pick != "auto":
            return self.pick
        c = self.collection.lower()
        s2 = "sentinel" in c or "s2" in re.split(r"[/_:. -]", c)
        return "closest-to-date" if s2 else "most-recent"


@dataclass(frozen=True)
class GraftInputs:
    photos: str  # table, flickr:..., or a plan folder
    imagery: str
    out: str
    columns: ColumnSpec = field(default_factory=ColumnSpec)
    flickr: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TileTask:
    index: int
    tiles: list[dict[str, Any]]
    photos: dict[str, list[dict[str, Any]]]


@dataclass(frozen=True)
class GraftContext:
    out: str
    source: ImagerySource
    cfg: GraftBuildConfig
    fetcher: PhotoFetcher


@dataclass
class GraftRunPlan:
    out: Path
    tasks: list[TileTask]
    pending: list[TileTask]
    context: GraftContext
    run: dict[str, Any]


def _fingerprint(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _photos_identity(spec: str) -> dict[str, Any]:
    p = Path(spec)
    if p.is_file():
        st = p.stat()
        return {"path": str(p.resolve()), "bytes": st.st_size, "mtime": int(st.st_mtime)}
    if is_plan_dir(p):
        return {"plan": str(p.resolve()), "stats": (p / "plan_stats.json").read_text()}
    return {"spec": spec}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with publishing(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))


def _clear(out: Path) -> None:
    shutil.rmtree(out / "shards", ignore_errors=True)
    for name in (*PLAN_FILES, "run.json"):
        (out / name).unlink(missing_ok=True)


def prepare_graft(inputs: GraftInputs, tiling: TilingConfig, cfg: GraftBuildConfig, *, overwrite: bool = False,
                  log: Callable[[str], None] = lambda _m: None) -> GraftRunPlan:
    """Check the output folder, plan (or reuse the plan), build the imagery source, list shards."""
    from pipeline.graft.sources import make_photo_source
    from pipeline.imagery import make_imagery_source

    require_local_out(inputs.out, "build-graft")
    out = Path(inputs.out)
    source = make_imagery_source(inputs.imagery)  # bad specs fail before any work
    identity = {"tiling": asdict(tiling), "build": asdict(cfg), "photos": _photos_identity(inputs.photos),
                "columns": asdict(inputs.columns), "flickr": inputs.flickr, "imagery": inputs.imagery}
    fp = _fingerprint(identity)
    run_path = out / "run.json"
    if overwrite:
        _clear(out)
    elif run_path.is_file():
        prev = json.loads(run_path.read_text()).get("fingerprint")
        if prev != fp:
            raise OutputConflictError(
                f"{str(out)!r} already holds a GRAFT build made with different inputs or config (fingerprint "
                f"{prev} != {fp}). Pass --overwrite to start over, or choose another --out."
            )
    out.mkdir(parents=True, exist_ok=True)
    sweep_temporaries(out / "shards")
    photo_src: dict[str, Any]
    if is_plan_dir(out) and run_path.is_file():
        log("resuming: reusing the plan in --out")
        photo_src = json.loads(run_path.read_text()).get("photos", {})
    elif is_plan_dir(Path(inputs.photos)):
        log(f"using the plan in {inputs.photos}")
        tiles_t, photos_t, stats = read_plan(Path(inputs.photos))
        if Path(inputs.photos).resolve() != out.resolve():
            for name in PLAN_FILES:
                shutil.copyfile(Path(inputs.photos) / name, out / name)
        photo_src = {"plan": str(Path(inputs.photos).resolve()), "source": stats.get("source")}
    else:
        src = make_photo_source(inputs.photos, inputs.columns, **inputs.flickr)
        table = src.load()
        log(f"read {len(table.photos):,} usable photos ({table.counts()['rejected'] or 'none rejected'})")
        plan = plan_tiles(table.photos, tiling)
        photo_src = src.describe()
        write_plan(out, plan, table, tiling, photo_src)
    tiles_t, photos_t, _stats = read_plan(out)
    tasks = _tasks(tiles_t.to_pylist(), photos_t.to_pylist(), cfg.shard_size)
    from pipeline.graft.fetch import PhotoFetcher

    ctx = GraftContext(str(out), source, cfg, PhotoFetcher(short_side=cfg.photo_short_side, quality=cfg.jpeg_quality))
    run = {"kind": "graft", "fingerprint": fp, "created": datetime.now(UTC).isoformat(timespec="seconds"),
           "tiling": asdict(tiling), "build": {**asdict(cfg), "pick_rule": cfg.rule}, "photos": photo_src,
           "imagery": _describe(source), "shards_total": len(tasks), "versions": _versions()}
    _write_json(run_path, run)
    pending = [t for t in tasks if not is_done(out / "shards", t.index)]
    return GraftRunPlan(out, tasks, pending, ctx, run)


def _describe(source: ImagerySource) -> dict[str, Any]:
    try:
        d = source.describe()
    except Exception as exc:  # a description must never stop a build
        return {"name": getattr(source, "name", "?"), "describe_error": type(exc).__name__}
    d = dict(d)
    d.pop("files", None)  # per-file lists can be huge
    return d


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("skyscript-toolkit", "numpy", "pyproj", "rasterio", "webdataset", "pillow"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _tasks(tiles: list[dict[str, Any]], photos: list[dict[str, Any]], shard_size: int) -> list[TileTask]:
    by_tile: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in photos:
        by_tile[p["tile_id"]].append(p)
    tiles = sorted(tiles, key=lambda t: t["tile_id"])
    return [
        TileTask(i // shard_size, chunk, {t["tile_id"]: by_tile[t["tile_id"]] for t in chunk})
        for i in range(0, len(tiles), shard_size)
        for chunk in [tiles[i : i + shard_size]]
    ]


def sat_request(tile: dict[str, Any], cfg: GraftBuildConfig) -> ChipRequest:
    """The fetch grid: ``fetch_scale`` × the tile, same centre, same CRS and GSD."""
    a, _b, c, _d, _e, f = tile["transform"]
    gsd = float(a)
    w, h = int(tile["width"]) * cfg.fetch_scale, int(tile["height"]) * cfg.fetch_scale
    cx, cy = c + tile["width"] * gsd / 2.0, f - tile["height"] * gsd / 2.0
    bounds = (cx - w * gsd / 2.0, cy - h * gsd / 2.0, cx + w * gsd / 2.0, cy + h * gsd / 2.0)
    tr = Transformer.from_crs(tile["crs"], "EPSG:4326", always_xy=True)
    bbox = tuple(float(v) for v in tr.transform_bounds(*bounds, densify_pts=21))
    return ChipRequest(
        key=tile["tile_id"], osm_type="node", osm_id=0, bbox=bbox, crs=tile["crs"], bounds=bounds,  # type: ignore[arg-type]
        width=w, height=h, gsd=gsd, collection=cfg.collection, seed=cfg.seed,
        date=tile["date"] if cfg.rule == "closest-to-date" else None,
    )


def error_code_of(exc: ImageryError) -> str:
    msg = str(exc)
    m = _CODE.match(msg)
    if m:
        return m.group(1)
    if "covers" in msg or "no raster" in msg or "no image" in msg:
        return "no_imagery"
    return "imagery_error"


def date_gap_days(tile_date: str | None, acquired: str | None) -> float | None:
    if not tile_date or not acquired:
        return None
    try:
        return float(abs((date.fromisoformat(acquired[:10]) - date.fromisoformat(tile_date[:10])).days))
    except ValueError:
        return None


def run_graft_shard(task: TileTask, ctx: GraftContext, on_object: Callable[[], None] | None = None) -> dict[str, Any]:
    """Write one shard (all its tiles); per-tile problems become failed rows."""
    writer = GraftShardWriter(Path(ctx.out) / "shards", task.index, jpeg_quality=ctx.cfg.jpeg_quality)
    try:
        for tile in task.tiles:
            _one_tile(writer, tile, task.photos.get(tile["tile_id"], []), ctx)
            if on_object is not None:
                on_object()
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def _one_tile(writer: GraftShardWriter, tile: dict[str, Any], photos: list[dict[str, Any]],
              ctx: GraftContext) -> None:
    cfg = ctx.cfg
    key = tile["tile_id"]
    base = {"tile_id": key, "split": tile["split"], "lon": tile["lon"], "lat": tile["lat"], "date": tile["date"],
            "collection": cfg.collection, "crs": tile["crs"], "gsd": tile["gsd"], "n_photos": len(photos)}
    if cfg.rule == "closest-to-date" and not tile["date"]:
        writer.add_failure(key, "no_date", "no_date: the tile's photos are undated and the pick rule "
                           "closest-to-date needs a date", base)
        return
    req = sat_request(tile, cfg)
    try:
        chip = ctx.source.read(req)
    except ImageryError as exc:
        writer.add_failure(key, error_code_of(exc), str(exc)[:500], base)
        return
    shift_x = (req.width - tile["width"]) / 2.0
    shift_y = (req.height - tile["height"]) / 2.0
    blobs: list[bytes | None] = []
    entries: list[dict[str, Any]] = []
    errors: Counter = Counter()
    for p in photos:
        entry = {"photo_id": p["photo_id"], "lon": p["lon"], "lat": p["lat"], "date": p["date"],
                 "px_x": p["px_x"] + shift_x, "px_y": p["px_y"] + shift_y,
                 "tile_px_x": p["px_x"], "tile_px_y": p["px_y"], "file": None, "error_code": ""}
        if not cfg.metadata_only:
            got = ctx.fetcher.get(p.get("path"), p.get("url"))
            if got.jpeg is None:
                entry["error_code"] = got.error_code
                entry["error_message"] = got.error_message
                errors[got.error_code] += 1
            else:
                entry["file"] = f"g{len(entries):02d}.jpg"
            blobs.append(got.jpeg)
        entries.append(entry)
    n_ok = len(photos) - sum(errors.values()) if not cfg.metadata_only else 0
    writer.photo_errors.update(errors)
    acquired = chip.acquired
    row = {**base, "acquired": acquired, "date_gap_days": date_gap_days(tile["date"], acquired),
           "source": chip.source, "collection": chip.collection, "image_id": chip.image_id,
           "width": chip.width, "height": chip.height, "n_photos_ok": n_ok,
           "photo_errors": json.dumps(dict(errors)) if errors else ""}
    if not cfg.metadata_only and n_ok == 0:
        writer.add_failure(key, "no_photos", f"no_photos: none of the {len(photos)} photos could be read "
                           f"({', '.join(f'{k} ×{v}' for k, v in sorted(errors.items()))})", row)
        return
    meta = {
        "key": key, "tile_id": key, "split": tile["split"], "lon": tile["lon"], "lat": tile["lat"],
        "crs": req.crs, "transform": list(req.transform), "width": chip.width, "height": chip.height,
        "gsd": req.gsd, "bbox": list(req.bbox), "tile_transform": list(tile["transform"]),
        "tile_width": tile["width"], "tile_height": tile["height"], "date": tile["date"], "acquired": acquired,
        "date_gap_days": row["date_gap_days"], "pick": cfg.rule, "source": chip.source,
        "collection": chip.collection, "image_id": chip.image_id, "native_gsd": chip.native_gsd,
        "provenance": _jsonable(chip.provenance), "metadata_only": cfg.metadata_only,
        "photos": entries, "photo_ids": [e["photo_id"] for e in entries],
    }
    writer.add_sample(key, encode_jpeg(chip.pixels, cfg.jpeg_quality), blobs, meta, row)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d, default=str))


def finish_graft(plan: GraftRunPlan) -> dict[str, Any]:
    """Summary over all finished shards; written into run.json."""
    shards = plan.out / "shards"
    rows = read_rows(shards).to_pylist()
    errors = Counter(r["error_code"] for r in rows if r["status"] == "failed")
    done = done_shards(shards)
    photo_errors: Counter = Counter()
    for i in done:
        photo_errors.update(json.loads((shards / f"{i:05d}_stats.json").read_text()).get("photo_errors", {}))
    gaps = sorted(r["date_gap_days"] for r in rows if r["date_gap_days"] is not None)
    summary = {
        "tiles": sum(len(t.tiles) for t in plan.tasks), "written": sum(r["status"] == "ok" for r in rows),
        "failed": sum(r["status"] == "failed" for r in rows), "errors": dict(errors.most_common()),
        "photos_written": sum(r["n_photos_ok"] or 0 for r in rows if r["status"] == "ok"),
        "photo_errors": dict(photo_errors.most_common()),
        "shards_done": len(done), "shards_total": len(plan.tasks),
        "median_date_gap_days": gaps[len(gaps) // 2] if gaps else None,
        "splits": dict(Counter(r["split"] for r in rows if r["status"] == "ok")),
    }
    _write_json(plan.out / "run.json", {**plan.run, "summary": summary})
    return summary


def build_graft(inputs: GraftInputs, tiling: TilingConfig, cfg: GraftBuildConfig, *, overwrite: bool = False,
                executor: str = "local", on_object: Callable[[], None] | None = None,
                log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """The whole build in-process or over Dask (see :func:`pipeline.executors.map_shards`)."""
    from pipeline.executors import map_shards

    plan = prepare_graft(inputs, tiling, cfg, overwrite=overwrite, log=log)
    map_shards(run_graft_shard, plan.pending, plan.context, executor=executor, on_object=on_object)
    return finish_graft(plan)
