"""Collection choice per object (issue 8, item 2), as SkyScript did it: by the tag's max GSD and
the object's size, among the collections that cover it.

A collection is a *candidate* for an object when

1. its coverage holds the object's target geometry (the chosen vertex of a line, else the object);
2. its dates admit an image (on the request's target date, when there is one);
3. its GSD is no coarser than the object's max GSD (the tag classifier's answer; None = any);
4. for polygons, the object's bounding box spans between ``planner.min_object_px`` and
   ``planner.max_object_px`` pixels at that GSD (measured in metres on the object's UTM grid, so
   it is right at any latitude).

``imagery.choose: finest`` takes candidates finest GSD first (catalog order breaks ties);
``random`` shuffles them with a per-object RNG seeded by ``(seed, key)``. Up to
``imagery.images_per_object`` chips come from distinct collections: the first keeps the object's
key, later ones get ``_1``, ``_2``, ... (keys never contain dots). A candidate the chip planner
cannot use (e.g. too big even when coarsened) is skipped for the next one.

A tile that would cross the antimeridian or reach a pole becomes a failed row: lon/lat boxes,
STAC searches and coverage tests are not defined across them.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import LineString, MultiLineString, Point
from shapely.geometry.base import BaseGeometry

from pipeline.chips import Footprints, plan_chip, target_geometry
from pipeline.config import ImageryConfig, PlannerConfig
from pipeline.errors import ConfigError
from pipeline.failures import EDGE, INVALID_GEOMETRY, NO_IMAGERY, TOO_COARSE, TOO_LARGE, Failure, joined
from pipeline.geo import utm_epsg
from pipeline.imagery.georef import WGS84, transformer
from pipeline.records import ChipRequest, OsmObject
from pipeline.seams import Coverage

CHOOSE_POLICIES = ("finest", "random")
POLE_LAT = 89.0  # tiles reaching beyond this latitude count as touching the pole


@dataclass(frozen=True)
class Candidate:
    """One collection that might serve an object: where it comes from and its coverage."""

    collection: str
    source: str  # "local", "gee", "stac"
    gsd: float
    coverage: BaseGeometry | None  # WGS84; None: ask ``image_ids``' footprints (local rasters)
    dates: tuple[str | None, str | None] = (None, None)
    image_id: str = ""  # local rasters: the file
    order: int = 0  # catalog order, breaks GSD ties

    def admits(self, date: str | None, today: str) -> bool:
        start, end = self.dates
        if start is not None and (start > today or (end is not None and start > end)):
            return False
        return date is None or ((start is None or start <= date[:10]) and (end is None or date[:10] <= end))


def object_span_m(obj: OsmObject) -> float:
    """Largest side of the object's bounding box in metres on its UTM grid (0 for points/lines)."""
    geom = obj.geometry
    if geom is None or isinstance(geom, Point | LineString | MultiLineString):
        return 0.0
    c = geom.representative_point()
    crs = f"EPSG:{utm_epsg(c.x, c.y)}"
    tr = transformer(WGS84, crs)
    utm = shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    w, s, e, n = utm.bounds
    return float(max(e - w, n - s))


def candidates(
    obj: OsmObject,
    pool: Sequence[Candidate],
    planner: PlannerConfig,
    seed: int,
    *,
    max_gsd: float | None,
    date: str | None = None,
    today: str = "9999-12-31",
) -> tuple[list[Candidate], Failure]:
    """The candidates for ``obj`` among ``pool``, and (when none) why not, naming each filter."""
    target = target_geometry(obj, seed)
    if target is None:
        return [], Failure(INVALID_GEOMETRY, obj.error_message or f"object {obj.key} has no usable geometry")
    span = object_span_m(obj)
    # getattr: min_object_px is new in PlannerConfig (default 4)
    lo, hi = int(getattr(planner, "min_object_px", 4)), planner.max_object_px
    why = {"coverage": 0, "dates": 0, "gsd": 0, "size": 0}
    out = []
    for cand in pool:
        if cand.coverage is not None and not cand.coverage.covers(target):
            why["coverage"] += 1
            continue
        if not cand.admits(date, today):
            why["dates"] += 1
            continue
        if max_gsd is not None and cand.gsd > max_gsd * (1 + 1e-9):
            why["gsd"] += 1
            continue
        if span > 0 and not lo <= span / cand.gsd <= hi:
            why["size"] += 1
            continue
        out.append(cand)
    if out:
        return out, Failure(NO_IMAGERY, "")
    if not pool:
        return [], Failure(NO_IMAGERY, "no imagery collection is available for the given --imagery sources")
    if why["coverage"] == len(pool):
        return [], Failure(NO_IMAGERY, f"no imagery covers this object (none of {len(pool)} collections)")
    parts = []
    if why["coverage"]:
        parts.append(f"{why['coverage']} do not cover it")
    if why["dates"]:
        parts.append(f"{why['dates']} have no image in their date range" + (f" around {date}" if date else ""))
    if why["gsd"]:
        parts.append(f"{why['gsd']} are coarser than its max GSD {max_gsd:.3g} m")
    if why["size"]:
        parts.append(f"{why['size']} would show it outside {lo}..{hi} px (it spans {span:.0f} m)")
    # The code says what stopped the collections that cover the object.
    code = TOO_LARGE if why["size"] and not why["gsd"] else TOO_COARSE if why["gsd"] else NO_IMAGERY
    return [], Failure(code, "no usable imagery collection: " + "; ".join(parts))


def order(cands: Sequence[Candidate], policy: str, seed: int, key: str) -> list[Candidate]:
    """Candidates in the order they are tried: finest first, or a seeded per-object shuffle."""
    if policy == "finest":
        return sorted(cands, key=lambda c: (c.gsd, c.order))
    if policy == "random":
        rng = np.random.default_rng(np.random.SeedSequence([int(seed) % (1 << 64), zlib.crc32(key.encode()), 8]))
        base = sorted(cands, key=lambda c: (c.gsd, c.order))  # a fixed start, so the shuffle is reproducible
        return [base[i] for i in rng.permutation(len(base))]
    raise ConfigError(f"imagery.choose must be one of {CHOOSE_POLICIES}, got {policy!r}")


def _crosses_edges(req: ChipRequest) -> Failure | None:
    w, s, e, n = req.bbox
    if w > e or e - w > 180.0:
        return Failure(EDGE, "the tile crosses the antimeridian (180°); objects there are not supported")
    if n >= POLE_LAT or s <= -POLE_LAT:
        return Failure(EDGE, f"the tile reaches within {90 - POLE_LAT:g}° of a pole; objects there are not supported")
    return None


def suffixed(key: str, i: int) -> str:
    """The key of an object's ``i``-th chip: the object key, then ``key_1``, ``key_2``, ..."""
    return key if i == 0 else f"{key}_{i}"


def plan_object(
    obj: OsmObject,
    pool: Sequence[Candidate],
    planner: PlannerConfig,
    imagery: ImageryConfig,
    seed: int,
    *,
    max_gsd: float | None,
    date: str | None = None,
    today: str = "9999-12-31",
    footprints: Footprints | None = None,
) -> list[ChipRequest] | Failure:
    """Up to ``images_per_object`` requests from distinct collections, or why there are none."""
    if imagery.images_per_object < 1:
        raise ConfigError(f"imagery.images_per_object must be >= 1, got {imagery.images_per_object}")
    cands, why = candidates(obj, pool, planner, seed, max_gsd=max_gsd, date=date, today=today)
    if not cands:
        return why
    out: list[ChipRequest] = []
    reasons: list[Failure] = []
    for cand in order(cands, imagery.choose, seed, obj.key):
        cov = Coverage(cand.collection, cand.image_id, cand.gsd, "", None)
        fps = footprints if cand.image_id else None  # local rasters: keep the tile inside the file
        planned = plan_chip(obj, [cov], planner, seed, fps, source_name=cand.source, max_gsd=max_gsd)
        if isinstance(planned, str):  # a Failure
            reasons.append(Failure(getattr(planned, "code", NO_IMAGERY),
                                   f"{cand.collection}: {planned.removeprefix(': ')}"))
            continue
        edge = _crosses_edges(planned)
        if edge is not None:
            return edge
        key = suffixed(obj.key, len(out))
        out.append(_with(planned, key=key, source=cand.source, date=date))
        if len(out) >= imagery.images_per_object:
            break
    return out if out else joined(reasons)


def _with(req: ChipRequest, *, key: str, source: str, date: str | None) -> ChipRequest:
    import dataclasses

    return dataclasses.replace(req, key=key, source=source, date=date)


def pixel_span(obj: OsmObject, gsd: float) -> float:
    """The object's bounding-box span in pixels at ``gsd`` (0 for points and lines)."""
    span = object_span_m(obj)
    return span / gsd if span and gsd > 0 and math.isfinite(span) else 0.0
