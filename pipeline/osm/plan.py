"""An acquisition plan (random cells + targeted tags, optionally inside a bbox) and the
selector that applies it in ONE streaming pass over an extract.

Cells are looked up by index: an object's cell candidates come from ``floor(lon/deg)`` and
``floor(lat/deg)`` of its bounds, checked against a set of planned cell keys, so the cost
per object does not grow with the number of cells in the plan.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from pipeline.errors import BadInputError
from pipeline.geo import BBox
from pipeline.osm.cells import CellPlan
from pipeline.osm.overpass_ql import QueryLimits, build_query, split_bbox
from pipeline.osm.select import Bounds
from pipeline.osm.tags import TagMatcher, tag_spec_text

WORLD = BBox(-180.0, -90.0, 180.0, 90.0)
_EDGE = 1e-9  # in cell units
_ENUMERATE_MAX = 64  # above this many grid cells in an object's bounds, scan the plan's cells instead


def cell_key(ix: int, iy: int) -> int:
    return ix * 4_000_037 + iy  # |iy| < 2e6 for any cell size >= 1e-4 degrees


@dataclass(frozen=True)
class Target:
    """A targeted tag (``value=None``: any value), limited to grid tiles when ``tiles`` is set."""

    key: str
    value: str | None
    tile_deg: float | None = None
    tiles: frozenset[tuple[int, int]] | None = None

    @property
    def text(self) -> str:
        return tag_spec_text(self.key, self.value)

    def tile_boxes(self) -> list[BBox]:
        if self.tiles is None or self.tile_deg is None:
            return []
        d = self.tile_deg
        return [BBox(i * d, j * d, min((i + 1) * d, 180.0), min((j + 1) * d, 90.0)) for i, j in sorted(self.tiles)]


@dataclass(frozen=True)
class Plan:
    """Objects in any planned cell OR with a targeted tag; everything ANDed with ``bbox``.

    No cells and no targets means "every object" (in ``bbox``).
    """

    cells: CellPlan | None = None
    targets: tuple[Target, ...] = ()
    bbox: BBox | None = None
    tag_tile_deg: float = 10.0  # Overpass tiles for targets without their own tiles
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def everything(self) -> bool:
        """No cells, no targets, no bbox: every object (file sources only)."""
        return self.cells is None and not self.targets and self.bbox is None

    def describe(self) -> dict[str, Any]:
        return {
            "cells": 0 if self.cells is None else len(self.cells),
            "cell_deg": None if self.cells is None else self.cells.cell_deg,
            "targets": [t.text for t in self.targets],
            "bbox": None if self.bbox is None else list(self.bbox.as_tuple()),
            **self.extra,
        }

    def overpass_queries(self, limits: QueryLimits, max_query_deg: float) -> Iterator[str]:
        """One query per cell, per (target, tile), or per bbox tile."""
        if self.everything:
            raise BadInputError("Overpass needs --cells, --targeted, --tags or --bbox; it never fetches the planet")
        if self.cells is not None:
            for box in self.cells.bboxes():
                if self.bbox is None or self.bbox.intersects(box.as_tuple()):
                    yield build_query(box, None, limits)
        for t in self.targets:
            boxes = t.tile_boxes() or split_bbox(self.bbox or WORLD, self.tag_tile_deg)
            for box in boxes:
                if self.bbox is None or self.bbox.intersects(box.as_tuple()):
                    yield build_query(box, [(t.key, t.value)], limits)
        if self.cells is None and not self.targets and self.bbox is not None:
            for box in split_bbox(self.bbox, max_query_deg):
                yield build_query(box, None, limits)


class PlanSelector:
    """Applies a :class:`Plan` to objects as a pyosmium pass streams them."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        cells = plan.cells
        self.deg = cells.cell_deg if cells is not None else None
        self.cell_keys = {cell_key(i, j) for i, j in cells.pairs()} if cells is not None else set()
        self.ix = cells.ix if cells is not None else np.empty(0, np.int64)
        self.iy = cells.iy if cells is not None else np.empty(0, np.int64)
        self.matcher = TagMatcher((t.key, t.value) for t in plan.targets)
        self.everything = cells is None and not plan.targets
        self.tiled = [t for t in plan.targets if t.tiles is not None]

    def describe(self) -> dict[str, Any]:
        return {"select": "plan", **self.plan.describe()}

    # -- cells ---------------------------------------------------------------------------
    def _cells_in(self, bounds: Bounds) -> list[tuple[int, int]]:
        assert self.deg is not None
        d = self.deg
        # Cells are closed boxes (as Overpass bboxes are): a coordinate on a cell edge touches
        # both neighbours, so widen the index range a hair and let the exact test decide.
        x0, y0 = math.floor(bounds[0] / d - _EDGE), math.floor(bounds[1] / d - _EDGE)
        x1, y1 = math.floor(bounds[2] / d + _EDGE), math.floor(bounds[3] / d + _EDGE)
        if (x1 - x0 + 1) * (y1 - y0 + 1) <= _ENUMERATE_MAX:
            return [(i, j) for i in range(x0, x1 + 1) for j in range(y0, y1 + 1) if cell_key(i, j) in self.cell_keys]
        sel = (self.ix >= x0) & (self.ix <= x1) & (self.iy >= y0) & (self.iy <= y1)
        return list(zip(self.ix[sel].tolist(), self.iy[sel].tolist(), strict=True))

    def _point_in_cells(self, lon: float, lat: float) -> bool:
        d = self.deg
        assert d is not None
        return any(
            i * d <= lon <= (i + 1) * d and j * d <= lat <= (j + 1) * d for i, j in self._cells_in((lon, lat, lon, lat))
        )

    def _in_cells(self, geom: BaseGeometry) -> bool:
        if self.deg is None:
            return False
        d = self.deg
        cand = self._cells_in(geom.bounds)
        if not cand:
            return False
        boxes = shapely.box(*np.array([(i * d, j * d, (i + 1) * d, (j + 1) * d) for i, j in cand]).T)
        return bool(shapely.intersects(geom, boxes).any())

    # -- targets -------------------------------------------------------------------------
    def _target_ok(self, tags: Mapping[str, str], lon: float, lat: float) -> bool:
        if not self.matcher or not self.matcher.matches(tags):
            return False
        for t in self.plan.targets:
            if t.key in tags and (t.value is None or tags[t.key] == t.value):
                if t.tiles is None or t.tile_deg is None:
                    return True
                if (math.floor(lon / t.tile_deg), math.floor(lat / t.tile_deg)) in t.tiles:
                    return True
        return False

    # -- Selector protocol ---------------------------------------------------------------
    def _in_bbox(self, bounds: Bounds) -> bool:
        return self.plan.bbox is None or self.plan.bbox.intersects(bounds)

    def point(self, lon: float, lat: float, tags: Mapping[str, str]) -> bool:
        if not self._in_bbox((lon, lat, lon, lat)):
            return False
        if self.everything:
            return True
        if self.deg is not None and self._point_in_cells(lon, lat):
            return True
        return self._target_ok(tags, lon, lat)

    def maybe(self, bounds: Bounds, tags: Mapping[str, str]) -> bool:
        if not self._in_bbox(bounds):
            return False
        if self.everything or (self.matcher and self.matcher.matches(tags)):
            return True
        return self.deg is not None and bool(self._cells_in(bounds))

    def geometry(self, geom: BaseGeometry, tags: Mapping[str, str]) -> bool:
        box = self.plan.bbox
        if box is not None and not geom.intersects(shapely.box(*box.as_tuple())):
            return False
        if self.everything or self._in_cells(geom):
            return True
        p = geom.representative_point() if self.tiled else None
        return self._target_ok(tags, p.x if p else 0.0, p.y if p else 0.0)

    def unlocated(self, tags: Mapping[str, str]) -> bool:
        # A broken relation's place is unknown: report it when its tag was asked for anywhere.
        if self.plan.everything:
            return True
        untiled = [t for t in self.plan.targets if t.tiles is None]
        return self.plan.bbox is None and bool(untiled) and TagMatcher((t.key, t.value) for t in untiled).matches(tags)
