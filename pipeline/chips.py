"""Object-centred chip planning: which tile, on which grid, from which raster (issue 2, item 5).

Rules (all randomness comes from a per-object RNG seeded by ``(seed, crc32(key))``, so the same
object and seed always give the same request, in any process and any order):

- **Anchor.** A point is the tile centre; a line's tile is centred on one of its vertices
  chosen at random; a polygon (or any other geometry with extent) is framed by its bounding box
  grown by ``cfg.margin_frac`` on each side.
- **Grid.** The WGS84 UTM zone of the anchor (``pipeline.geo.utm_epsg``), north-up, square
  pixels of ``gsd`` metres. ``gsd`` is the covering raster's native ground GSD, or ``cfg.gsd``
  when set — never finer than native (upsampling invents no detail).
- **Size.** Points and lines: a random size in ``[tile_px_min, tile_px_max]``. Polygons: what
  the bbox + margin needs at ``gsd``, at least ``tile_px_min``. An object needing more than
  ``cfg.max_object_px`` at the raster's GSD fails (``"object larger than N px ..."``); one
  needing more than ``tile_px_max`` is framed at a coarser GSD, doubling it until it fits
  (never beyond ``max_gsd``, the coarsest GSD at which the object is still recognisable, when
  the caller knows it).
- **Jitter.** With ``cfg.jitter`` the tile is shifted at random, uniformly over the positions
  that keep the object's *keep box* inside the tile: the anchor point padded by
  ``margin_frac / 2`` of the tile (points, lines), or the bbox padded by ``margin_frac / 2`` of
  the object's size (polygons). Without jitter the keep box is centred.
- **Raster edges.** When the raster footprints are known (``footprints``), the tile is moved
  — as little as possible, never letting the keep box leave it — so it lies wholly inside the
  chosen raster. If it cannot, only the bare object (keep box without padding) must stay in
  the tile; failing that (the raster is smaller than the tile), the smallest allowed tile is
  tried, then the next covering raster, and otherwise the object fails with the reason
  ``"object too close to the edge of the imagery ..."``. Chips are therefore never part-black
  from running off a raster. Without footprints the tile is not moved.

``plan_chip`` returns a :class:`ChipRequest`, or a :class:`pipeline.failures.Failure` (a ``str``
with a stable ``code``) saying why none could be planned (a failed row for the build). The planner
config is range-checked when it is built (``PlannerConfig.__post_init__``).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import LineString, MultiLineString, Point, box
from shapely.geometry.base import BaseGeometry
from shapely.ops import nearest_points

from pipeline.config import PlannerConfig
from pipeline.failures import EDGE, INVALID_GEOMETRY, NO_IMAGERY, NODATA, TOO_COARSE, TOO_LARGE, Failure, joined
from pipeline.geo import utm_epsg
from pipeline.imagery.georef import WGS84, transformer
from pipeline.records import ChipRequest, OsmObject
from pipeline.seams import Coverage, ImagerySource

Footprints = Mapping[str, BaseGeometry] | Callable[[str], BaseGeometry | None]


def object_rng(seed: int, key: str) -> np.random.Generator:
    """Per-object RNG: stable across processes (crc32, never Python's salted ``hash``)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) % (1 << 64), zlib.crc32(key.encode())]))


@dataclass(frozen=True, slots=True)
class _Anchor:
    """Where a tile goes: a point to centre on (points, lines) or a bbox to frame (polygons)."""

    lonlat: tuple[float, float]  # picks the UTM zone
    geometry: BaseGeometry  # WGS84: the point, or the object itself for polygons
    is_point: bool


def _anchor(obj: OsmObject, rng: np.random.Generator) -> _Anchor:
    geom = obj.geometry
    assert geom is not None
    if isinstance(geom, Point):
        return _Anchor((geom.x, geom.y), geom, True)
    if isinstance(geom, LineString | MultiLineString):
        coords = shapely.get_coordinates(geom)
        x, y = coords[int(rng.integers(len(coords)))]
        return _Anchor((float(x), float(y)), Point(x, y), True)
    w, s, e, n = geom.bounds
    return _Anchor(((w + e) / 2.0, (s + n) / 2.0), geom, False)


def target_geometry(obj: OsmObject, seed: int) -> BaseGeometry | None:
    """The geometry imagery must cover for ``obj``: the chosen node of a line, else the object."""
    if not obj.ok:
        return None
    return _anchor(obj, object_rng(seed, obj.key)).geometry


def _to_utm(geom: BaseGeometry, crs: str) -> BaseGeometry:
    tr = transformer(WGS84, crs)
    return shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def _footprint_of(footprints: Footprints | None, image_id: str) -> BaseGeometry | None:
    if footprints is None:
        return None
    if callable(footprints):
        return footprints(image_id)
    return footprints.get(image_id)


def _place(
    keep: tuple[float, float, float, float],
    size: float,
    u: tuple[float, float] | None,
    footprint: BaseGeometry | None,
) -> tuple[float, float] | None:
    """Lower-left corner of a ``size`` square containing ``keep``, inside ``footprint`` if given."""
    kx0, ky0, kx1, ky1 = keep
    lo_x, hi_x, lo_y, hi_y = kx1 - size, kx0, ky1 - size, ky0  # corners that keep ``keep`` inside
    if u is None:
        x, y = (lo_x + hi_x) / 2.0, (lo_y + hi_y) / 2.0
    else:
        x, y = lo_x + u[0] * (hi_x - lo_x), lo_y + u[1] * (hi_y - lo_y)
    if footprint is None:
        return x, y
    # Corners whose whole square lies in the (near-convex) footprint: all four corners inside it.
    feasible = footprint
    for dx, dy in ((-size, 0.0), (0.0, -size), (-size, -size)):
        feasible = feasible.intersection(affinity.translate(footprint, dx, dy))
    region = feasible.intersection(box(lo_x, lo_y, max(hi_x, lo_x), max(hi_y, lo_y)))
    if region.is_empty:
        return None
    if region.covers(Point(x, y)):
        return x, y
    p = nearest_points(region, Point(x, y))[0]
    return p.x, p.y


def plan_chip(
    obj: OsmObject,
    coverages: Sequence[Coverage],
    cfg: PlannerConfig,
    seed: int,
    footprints: Footprints | None = None,
    *,
    source_name: str = "imagery",
    max_gsd: float | None = None,
) -> ChipRequest | Failure:
    """Plan the tile for ``obj`` from the first usable raster in ``coverages`` (finest first).

    ``footprints`` maps a coverage's ``image_id`` to its WGS84 outline (a mapping, or a callable
    such as ``LocalRasterSource.footprint``); with it, tiles stay inside the raster.
    Returns the request, or a failure reason.
    """
    if not obj.ok:
        return Failure(INVALID_GEOMETRY, obj.error_message or f"object {obj.key} has no usable geometry")
    if not coverages:
        return Failure(NO_IMAGERY, f"no imagery covers this object (source {source_name})")
    rng = object_rng(seed, obj.key)
    anchor = _anchor(obj, rng)  # first draw: the line vertex
    px_drawn = int(rng.integers(cfg.tile_px_min, cfg.tile_px_max + 1))  # second: points/lines size
    u_drawn = (float(rng.random()), float(rng.random()))  # third: the jitter
    u = u_drawn if cfg.jitter else None
    epsg = utm_epsg(*anchor.lonlat)
    crs = f"EPSG:{epsg}"
    geom_utm = _to_utm(anchor.geometry, crs)
    reasons: list[Failure] = []
    for cov in coverages:
        sized = _size(anchor.is_point, geom_utm.bounds, cov.native_gsd, cfg, px_drawn, max_gsd)
        if isinstance(sized, Failure):
            reasons.append(Failure(sized.code, f"{cov.image_id}: {sized}"))
            continue
        gsd, sizes = sized
        fp = _footprint_of(footprints, cov.image_id)
        fp_utm = _to_utm(fp, crs) if fp is not None else None
        for px in sizes:
            side = px * gsd
            # Near a raster edge the padded keep box may not fit; the bare object still must.
            for pad in (True, False) if fp_utm is not None else (True,):
                keep = _keep_box(anchor.is_point, geom_utm.bounds, side, cfg, pad)
                corner = _place(keep, side, u, fp_utm)
                if corner is not None:
                    return _request(obj, cov, crs, corner, px, gsd, seed)
        reasons.append(Failure(
            EDGE,
            f"{cov.image_id}: object too close to the edge of the imagery (no {sizes[-1]} px tile at "
            f"{gsd:.3g} m/px fits inside the raster around it)",
        ))
    return joined(reasons)


def _size(
    is_point: bool,
    bounds: tuple[float, float, float, float],
    native: float,
    cfg: PlannerConfig,
    px_drawn: int,
    max_gsd: float | None,
) -> tuple[float, list[int]] | Failure:
    """(gsd, tile sizes to try, largest first) for one raster, or why it cannot be used."""
    gsd = max(cfg.gsd, native) if cfg.gsd else native
    if max_gsd is not None and gsd > max_gsd * (1 + 1e-9):
        return Failure(TOO_COARSE, f"imagery GSD {gsd:.3g} m/px is coarser than this object needs ({max_gsd:.3g} m/px)")
    if is_point:
        return gsd, sorted({px_drawn, cfg.tile_px_min}, reverse=True)
    w, s, e, n = bounds
    extent = max(e - w, n - s) * (1.0 + 2.0 * cfg.margin_frac)
    need = math.ceil(extent / gsd)
    if need > cfg.max_object_px:
        return Failure(TOO_LARGE, f"object larger than {cfg.max_object_px} px at {gsd:.3g} m/px (needs {need} px)")
    while need > cfg.tile_px_max:  # frame big objects at a coarser GSD, power-of-two steps
        gsd *= 2.0
        need = math.ceil(extent / gsd)
        if max_gsd is not None and gsd > max_gsd * (1 + 1e-9):
            return Failure(
                TOO_LARGE,
                f"object larger than {cfg.tile_px_max} px even at {max_gsd:.3g} m/px, the coarsest GSD "
                "it is recognisable at",
            )
    return gsd, [max(cfg.tile_px_min, need)]


def _keep_box(
    is_point: bool, bounds: tuple[float, float, float, float], side: float, cfg: PlannerConfig, pad: bool
) -> tuple[float, float, float, float]:
    """The box that must stay inside the tile (see the module docstring); ``pad=False``: the bare object."""
    w, s, e, n = bounds
    if not pad:
        return bounds
    # Points: a share of the tile (capped so the box stays smaller than the tile); polygons: of the object.
    grow = min(cfg.margin_frac / 2.0, 0.45) * side if is_point else cfg.margin_frac / 2.0 * max(e - w, n - s)
    return (w - grow, s - grow, e + grow, n + grow)


def _request(
    obj: OsmObject, cov: Coverage, crs: str, corner: tuple[float, float], px: int, gsd: float, seed: int
) -> ChipRequest:
    x0, y0 = corner
    bounds = (x0, y0, x0 + px * gsd, y0 + px * gsd)
    west, south, east, north = transformer(crs, WGS84).transform_bounds(*bounds, densify_pts=21)
    return ChipRequest(
        key=obj.key,
        osm_type=obj.osm_type,
        osm_id=int(obj.osm_id),
        bbox=(float(west), float(south), float(east), float(north)),
        crs=crs,
        bounds=(float(bounds[0]), float(bounds[1]), float(bounds[2]), float(bounds[3])),
        width=px,
        height=px,
        gsd=float(gsd),
        collection=cov.collection,
        seed=int(seed),
        image_id=cov.image_id,
    )


def plan_for_source(
    obj: OsmObject, source: ImagerySource, cfg: PlannerConfig, seed: int, *, max_gsd: float | None = None
) -> ChipRequest | Failure:
    """Ask ``source`` what covers the object's target geometry, then :func:`plan_chip` within it.

    Lines only need the chosen vertex covered, not the whole (possibly long) line. Footprints
    are used when the source offers ``footprint(image_id)``.
    """
    target = target_geometry(obj, seed)
    if target is None:
        return Failure(INVALID_GEOMETRY, obj.error_message or f"object {obj.key} has no usable geometry")
    coverages = source.coverage(target)
    if not coverages:
        blank = getattr(source, "nodata_cover", None)
        hits = blank(target) if callable(blank) else []
        if hits:
            return Failure(NODATA, f"the imagery has no data under this object ({', '.join(hits[:3])} covers it "
                           "only with nodata pixels)")
    footprint = getattr(source, "footprint", None)
    return plan_chip(
        obj,
        coverages,
        cfg,
        seed,
        footprint if callable(footprint) else None,
        source_name=source.name,
        max_gsd=max_gsd,
    )
