"""The build plan: which objects become samples, in which shard, and which neighbours each
shard needs for its multi-object captions.

Made once per build by :func:`make_plan` and written to ``OUT/plan/`` (see :mod:`storage.plan`).
The planner works on columns, not records: it keeps the objects table (arrow, compact) and small
numpy arrays, never a list of every :class:`OsmObject`. Workers then read only their shard's file,
so their memory does not grow with the number of objects in the build.

Selection: an object is a candidate when at least one of its tags is visible from above at some
resolution and is not an absence (``building=no``); failed acquisition rows are included, so the
shard parquet accounts for them. A seeded subsample keeps ``max_objects``. Candidates are
ordered along a Morton (Z-order) curve of their centre, so a shard covers a compact area: its
neighbour set stays small and rasters are reused.

Neighbours: a tile never extends further from its object than the reach of :func:`reach_boxes`
(at most ``tile_px_max`` pixels at the imagery's GSD, never coarser than the object's max GSD), so
every object intersecting the object's bounds grown by that distance is a candidate neighbour.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from captioning.assemble import caption_single
from captioning.rules import negates
from pipeline.config import BuildConfig
from pipeline.seams import TagVisibility

SCAN_BATCH = 10_000
M_PER_DEG = 111_320.0
DEFAULT_MAX_GSD = 10.0  # the coarsest GSD class; used when a candidate's max GSD is unknown


@dataclass
class ScannedObjects:
    """The columns of the objects table the planner needs (row-aligned with ``table``)."""

    table: pa.Table
    candidate: np.ndarray  # bool: a planned-sample candidate (visible tags, first of its key)
    ok: np.ndarray  # bool: usable geometry (may be a neighbour)
    bounds: np.ndarray  # (n, 4) W, S, E, N; NaN without geometry
    max_gsd: np.ndarray  # float, NaN when unknown


def scan_objects(
    path: str, vis: TagVisibility, *, on_progress: Callable[[int], None] | None = None
) -> ScannedObjects:
    table = pq.read_table(path)
    n = table.num_rows
    candidate = np.zeros(n, dtype=bool)
    ok = np.zeros(n, dtype=bool)
    bounds = np.full((n, 4), np.nan)
    max_gsd = np.full(n, np.nan)
    seen: set[str] = set()
    prime = getattr(vis, "prime", None)  # optional: batch the model's predictions per batch
    status_col = "status" in table.column_names
    for start in range(0, n, SCAN_BATCH):
        part = table.slice(start, SCAN_BATCH)
        tags = [json.loads(t) for t in part.column("tags").to_pylist()]
        if prime is not None:
            prime(tags)
        wkb = part.column("geometry").to_numpy(zero_copy_only=False)
        geoms = shapely.from_wkb(wkb)
        valid = ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)
        if status_col:
            valid &= np.array([s in (None, "ok") for s in part.column("status").to_pylist()])
        bounds[start : start + len(tags)][valid] = shapely.bounds(geoms[valid])
        ok[start : start + len(tags)] = valid
        for i, (key, t) in enumerate(zip(part.column("key").to_pylist(), tags, strict=True)):
            if key in seen:
                continue
            seen.add(key)
            visible = vis.visible_tags(t, None)
            # Absences (building=no) are not something to see: such objects never become samples.
            if visible and (any(not negates(v) for v in visible.values()) or caption_single(visible)):
                candidate[start + i] = True
                g = vis.max_gsd(t)
                if g is not None:
                    max_gsd[start + i] = g
        if on_progress is not None:
            on_progress(min(start + SCAN_BATCH, n))
    return ScannedObjects(table, candidate, ok, bounds, max_gsd)


def select(scan: ScannedObjects, cfg: BuildConfig) -> np.ndarray:
    """Row indices of the planned samples, in shard order."""
    rows = np.flatnonzero(scan.candidate)
    if cfg.max_objects is not None and len(rows) > cfg.max_objects:
        rng = np.random.default_rng(cfg.seed)
        rows = rows[np.sort(rng.choice(len(rows), size=cfg.max_objects, replace=False))]
    return rows[np.argsort(morton(scan.bounds[rows]), kind="stable")]


def morton(bounds: np.ndarray, bits: int = 16) -> np.ndarray:
    """Z-order code of each box's centre (rows without geometry sort last)."""
    cx = (bounds[:, 0] + bounds[:, 2]) / 2.0
    cy = (bounds[:, 1] + bounds[:, 3]) / 2.0
    missing = ~np.isfinite(cx) | ~np.isfinite(cy)
    scale = (1 << bits) - 1
    qx = np.clip(np.nan_to_num((cx + 180.0) / 360.0) * scale, 0, scale).astype(np.uint64)
    qy = np.clip(np.nan_to_num((cy + 90.0) / 180.0) * scale, 0, scale).astype(np.uint64)
    code = np.zeros(len(bounds), dtype=np.uint64)
    for b in range(bits):
        code |= ((qx >> np.uint64(b)) & np.uint64(1)) << np.uint64(2 * b)
        code |= ((qy >> np.uint64(b)) & np.uint64(1)) << np.uint64(2 * b + 1)
    code[missing] = np.iinfo(np.uint64).max
    return code


def reach_boxes(
    bounds: np.ndarray, max_gsd: np.ndarray, cfg: BuildConfig, source_gsd: float | None = None
) -> np.ndarray:
    """Each object's bounds grown by the largest distance its tile can reach (degrees).

    A tile is at most ``tile_px_max`` pixels at the GSD it is cut at — the imagery's native GSD
    (at most ``source_gsd``, the source's coarsest, when known) or ``planner.gsd`` — except a
    large polygon framed at a coarser GSD, whose tile is its bounding box plus margins plus a pixel,
    and no GSD ever exceeds the object's max GSD.
    """
    g = np.where(np.isfinite(max_gsd), max_gsd, DEFAULT_MAX_GSD)
    cut = g if source_gsd is None else np.minimum(g, max(source_gsd, cfg.planner.gsd or 0.0))
    lat = np.clip(np.abs(np.nan_to_num((bounds[:, 1] + bounds[:, 3]) / 2.0)), 0.0, 89.0)
    coslat = np.maximum(np.cos(np.radians(lat)), 0.01)
    extent_deg = np.maximum((bounds[:, 2] - bounds[:, 0]) * coslat, bounds[:, 3] - bounds[:, 1])
    extent_m = np.nan_to_num(extent_deg) * M_PER_DEG
    reach_m = np.maximum(cfg.planner.tile_px_max * cut, extent_m * (1.0 + 2.0 * cfg.planner.margin_frac) + g) * 1.05
    dlat = reach_m / M_PER_DEG
    dlon = np.minimum(reach_m / (M_PER_DEG * coslat), 360.0)
    return np.column_stack([bounds[:, 0] - dlon, bounds[:, 1] - dlat, bounds[:, 2] + dlon, bounds[:, 3] + dlat])


class NeighbourIndex:
    """STRtree over the bounding boxes of every object with a usable geometry."""

    def __init__(self, scan: ScannedObjects) -> None:
        self.rows = np.flatnonzero(scan.ok)
        b = scan.bounds[self.rows]
        self.tree = shapely.STRtree(shapely.box(b[:, 0], b[:, 1], b[:, 2], b[:, 3]))

    def around(self, reach: np.ndarray) -> np.ndarray:
        """Rows (sorted, unique) of objects whose box intersects any of the ``reach`` boxes."""
        finite = np.isfinite(reach).all(axis=1)
        if not finite.any() or len(self.rows) == 0:
            return np.zeros(0, dtype=np.int64)
        q = reach[finite]
        _, hit = self.tree.query(shapely.box(q[:, 0], q[:, 1], q[:, 2], q[:, 3]), predicate="intersects")
        return np.unique(self.rows[hit])


def shard_rows(order: np.ndarray, shard_size: int) -> list[np.ndarray]:
    return [order[i : i + shard_size] for i in range(0, len(order), shard_size)]


def shard_input_rows(
    scan: ScannedObjects, planned: np.ndarray, index: NeighbourIndex, cfg: BuildConfig, source_gsd: float | None = None
) -> np.ndarray:
    """Rows a shard's worker needs: its planned objects and their candidate neighbours."""
    near = index.around(reach_boxes(scan.bounds[planned], scan.max_gsd[planned], cfg, source_gsd))
    return np.union1d(planned, near)


def degrees_for(metres: float, lat: float) -> tuple[float, float]:
    """(dlon, dlat) spanning ``metres`` at ``lat`` (for tests and tools)."""
    return metres / (M_PER_DEG * max(math.cos(math.radians(lat)), 0.01)), metres / M_PER_DEG
