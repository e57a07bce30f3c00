"""The S2-100K-style sampler: N patches of 256×256 px, 12 bands uint16, at 10 m on each scene's grid.

Sample ``i`` draws from a generator seeded by ``(seed, i)``: a location (uniform over land
by area, ``by="land"``) and a scene holding it, or a random scene and a random window
(``by="scene"``, SatCLIP's way). A window more than ``max_empty`` NaN/nodata or zero in
every band is rejected and redrawn, up to ``max_tries`` times; then the sample is a
failed row with the last reason. Shards of ``shard_size`` samples are done or not, so a
killed run resumes where it stopped and reproduces the same bytes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import box as shapely_box
from shapely.geometry.base import BaseGeometry

from pipeline.errors import BadInputError, OutputConflictError, require_local_out
from pipeline.osm.landmask import LandMask
from pipeline.satclip import draw
from pipeline.satclip.output import PatchShard, encode_patch, is_done, patch_name, provenance_tags, write_index
from pipeline.satclip.scenes import PATCH, Scene, SceneFilter, SceneGoneError, SceneReadError, SceneSource
from storage.atomic import publishing
from storage.shards import sweep_temporaries

BY = ("land", "scene")


@dataclass(frozen=True)
class SampleConfig:
    n: int
    seed: int = 0
    by: str = "land"
    land_only: bool = True
    region: tuple[float, float, float, float] | None = None
    scenes: SceneFilter = field(default_factory=SceneFilter)
    shard_size: int = 1000
    max_tries: int = 20
    max_empty: float = 0.1
    size: int = PATCH

    def __post_init__(self) -> None:
        if self.n < 1:
            raise BadInputError(f"--n must be at least 1, got {self.n}")
        if self.by not in BY:
            raise BadInputError(f"--by must be one of {', '.join(BY)}, got {self.by!r}")
        if self.shard_size < 1 or self.max_tries < 1:
            raise BadInputError("--shard-size and --max-tries must be at least 1")
        if not 0 <= self.max_empty <= 1:
            raise BadInputError(f"--max-empty is a fraction in [0, 1], got {self.max_empty}")

    def n_shards(self) -> int:
        return -(-self.n // self.shard_size)


@dataclass(frozen=True)
class Attempt:
    """Why one draw did not give a patch (a rejected window, no scene, a vanished scene...)."""

    code: str
    message: str


@dataclass
class Outcome:
    row: dict[str, Any]
    tif: bytes | None
    rejected: Counter
    failure: Attempt | None = None


def write(shard: PatchShard, outcome: Outcome) -> None:
    shard.rejected.update(outcome.rejected)
    if outcome.tif is not None:
        shard.add_patch(outcome.row, outcome.tif)
    else:
        assert outcome.failure is not None
        shard.add_failure(outcome.row, outcome.failure.code, outcome.failure.message)


class Sampler:
    """Draws and writes samples; ``source`` is any :class:`SceneSource`."""

    def __init__(
        self,
        cfg: SampleConfig,
        source: SceneSource,
        land: LandMask | None = None,
        pool: list[Scene] | None = None,
    ) -> None:
        self.cfg, self.source = cfg, source
        self.land = (land or LandMask()) if cfg.land_only and cfg.by == "land" else None
        self.box = cfg.region or draw.WORLD
        self.area: BaseGeometry | None = None
        self.pool: list[Scene] = []
        footprints = getattr(source, "footprints", None)
        if cfg.by == "land" and footprints is not None:
            # A folder of scenes covers little of the Earth: draw inside its footprints only.
            fps = footprints(cfg.scenes)
            if not fps:
                raise BadInputError("no scene passes the date and cloud filters (--start/--end/--max-cloud)")
            area = shapely.union_all([shapely_box(*fp) for fp in fps]).intersection(shapely_box(*self.box))
            if area.is_empty:
                raise BadInputError(f"the scenes' footprints do not meet --region {self.box}")
            self.area, self.box = area, tuple(area.bounds)  # type: ignore[assignment]
            shapely.prepare(area)
        if cfg.by == "scene":
            # ``pool`` lets Dask workers reuse the driver's listing instead of searching again.
            self.pool = list(pool) if pool is not None else source.all_scenes(cfg.scenes, cfg.region)
            if not self.pool:
                raise BadInputError(
                    "no scene matches the region, date and cloud filters (--by scene needs at least one)"
                )

    def draw(self, index: int, shard_index: int) -> Outcome:
        """Sample ``index`` alone (thread-safe, deterministic): a patch or a failure, and the rejections."""
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, index])
        base: dict[str, Any] = {
            "key": patch_name(index),
            "index": index,
            "shard": shard_index,
            "fn": f"{patch_name(index)}.tif",
        }
        rejected: Counter = Counter()
        last = Attempt("no_imagery", "no draw made")
        for tries in range(1, cfg.max_tries + 1):
            got = self._try(rng)
            if isinstance(got, Attempt):
                last = got
                rejected[got.code] += 1
                continue
            scene, col_off, row_off, pixels, empty, zero = got
            lon, lat = draw.window_centre(scene, col_off, row_off, cfg.size)
            tif = encode_patch(pixels, scene, col_off, row_off, provenance_tags(scene, lon, lat, col_off, row_off))
            row = {**base, **_scene_row(scene), "lon": lon, "lat": lat, "col_off": col_off, "row_off": row_off}
            return Outcome({**row, "empty_fraction": empty, "zero_fraction": zero, "tries": tries}, tif, rejected)
        failure = Attempt(last.code, f"{last.message} (after {cfg.max_tries} tries)")
        return Outcome({**base, "tries": cfg.max_tries}, None, rejected, failure)

    def sample(self, index: int, shard: PatchShard) -> None:
        write(shard, self.draw(index, shard.shard))

    def _try(self, rng: np.random.Generator) -> Attempt | tuple[Scene, int, int, np.ndarray, float, float]:
        cfg, size = self.cfg, self.cfg.size
        if cfg.by == "land":
            lon, lat = draw.draw_point(rng, self.box, self.land, self.area)
            try:
                scenes = self.source.scenes_at(lon, lat, cfg.scenes)
            except SceneReadError as exc:  # a failed search (gee: after its retries) fails this draw only
                return Attempt(exc.code, str(exc))
            if not scenes:
                return Attempt("no_imagery", f"no scene at ({lon:.5f}, {lat:.5f}) passes the filters")
            scene = scenes[int(rng.integers(len(scenes)))]
            if scene.width < size or scene.height < size:
                return Attempt(
                    "scene_small", f"scene {scene.scene_id} is {scene.width}×{scene.height} px, under one window"
                )
            col_off, row_off = draw.window_at(scene, lon, lat, size)
        else:
            scene = self.pool[int(rng.integers(len(self.pool)))]
            if scene.width < size or scene.height < size:
                return Attempt(
                    "scene_small", f"scene {scene.scene_id} is {scene.width}×{scene.height} px, under one window"
                )
            col_off, row_off = draw.random_window(rng, scene, size)
        try:
            pixels, nodata = self.source.read(scene, col_off, row_off, size)
        except SceneGoneError as exc:
            return Attempt("scene_gone", str(exc))
        except SceneReadError as exc:
            return Attempt(exc.code, str(exc))
        empty, zero = draw.empty_fractions(pixels, nodata)
        if empty > cfg.max_empty:
            return Attempt("nodata", f"window of {scene.scene_id} is {empty:.0%} nodata (max {cfg.max_empty:.0%})")
        if zero > cfg.max_empty:
            return Attempt(
                "zero", f"window of {scene.scene_id} is {zero:.0%} zero in all bands (max {cfg.max_empty:.0%})"
            )
        return scene, col_off, row_off, draw.to_uint16(pixels), empty, zero


def _scene_row(scene: Scene) -> dict[str, Any]:
    return {
        "scene_id": scene.scene_id,
        "datetime": scene.datetime,
        "cloud_cover": scene.cloud_cover,
        "mgrs_tile": scene.mgrs_tile,
        "platform": scene.platform,
        "source": scene.source,
        "crs": scene.crs,
    }


def run_config(cfg: SampleConfig, source: SceneSource) -> dict[str, Any]:
    return {"kind": "satclip-sample", "config": asdict(cfg), "source": source.describe()}


def check_output(out: Path, cfg: SampleConfig, source: SceneSource) -> None:
    """Refuse to mix runs: an existing run.json must describe the same sampling."""
    run = out / "run.json"
    want = json.loads(json.dumps(run_config(cfg, source)))
    if run.is_file():
        have = json.loads(run.read_text())
        if {k: have.get(k) for k in ("kind", "config")} != {k: want[k] for k in ("kind", "config")}:
            raise OutputConflictError(
                f"{out} holds a sampling run with another config ({run}); use a new --out or the same flags"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    with publishing(run) as tmp:
        tmp.write_text(json.dumps(want, indent=1, sort_keys=True))


def sample(
    cfg: SampleConfig,
    source: SceneSource,
    out: str | Path,
    land: LandMask | None = None,
    progress: bool = False,
    workers: int = 1,
) -> dict[str, Any]:
    """Run (or resume) the sampling into ``out``; returns totals. Done shards are skipped.

    ``workers`` threads draw a shard's samples concurrently (reads and COG encoding release
    the GIL; over HTTP most time is waiting); they are written in index order, so the output
    is the same bytes for any ``workers``.
    """
    from concurrent.futures import ThreadPoolExecutor

    if workers < 1:
        raise BadInputError(f"--workers must be at least 1, got {workers}")
    require_local_out(str(out), "satclip sample")
    out = Path(out)
    check_output(out, cfg, source)
    sweep(out)
    sampler = Sampler(cfg, source, land)
    totals: Counter = Counter()
    errors: Counter = Counter()
    todo = [s for s in range(cfg.n_shards()) if not is_done(out / "shards", s)]
    totals["skipped_shards"] = cfg.n_shards() - len(todo)
    bar = _progress(progress)
    with bar, ThreadPoolExecutor(max_workers=workers) as pool:
        task = bar.add_task("sampling patches", total=sum(len(_shard_range(cfg, s)) for s in todo))
        for s in todo:
            stats = run_shard_with(sampler, out, s, pool, lambda: bar.advance(task))
            totals["ok"] += stats["successes"]
            totals["failed"] += stats["failed"]
            errors.update(stats["errors"])
    n_index = write_index(out)
    return {"written": dict(totals), "errors": dict(errors), "index_rows": n_index, "out": str(out)}


def sweep(out: Path) -> int:
    """Remove temporaries a killed run left in ``shards/`` and ``images/``; how many."""
    return sum(sweep_temporaries(out / d) for d in ("shards", "images"))


def run_shard_with(
    sampler: Sampler, out: Path, shard_index: int, pool: Any, on_sample: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Draw one shard's samples on ``pool`` (a thread pool), write them in order, publish; its stats."""
    shard = PatchShard(out, shard_index)
    try:
        for outcome in pool.map(lambda i: sampler.draw(i, shard_index), _shard_range(sampler.cfg, shard_index)):
            write(shard, outcome)
            if on_sample is not None:
                on_sample()
    except BaseException:
        shard.abort()
        raise
    return shard.close()


def _shard_range(cfg: SampleConfig, shard: int) -> range:
    return range(shard * cfg.shard_size, min(cfg.n, (shard + 1) * cfg.shard_size))


def _progress(enabled: bool) -> Any:
    from pipeline.progress import progress_bar

    return progress_bar(disable=not enabled)
