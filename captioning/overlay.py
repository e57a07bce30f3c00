"""Which other OSM objects lie inside a tile: the neighbours of a multi-object caption.

One :class:`Overlay` is built per run (or shard) from every acquired object; each tile then
costs one STRtree query plus vectorised shapely intersections over the candidates only.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import shapely
from shapely.errors import GEOSException
from shapely.geometry.base import BaseGeometry

from pipeline.errors import BadInputError
from pipeline.records import OsmObject


class Overlay:
    """A spatial index over objects' WGS84 geometries (objects without one are left out).

    Order of :meth:`around`: polygons before lines before points (what a neighbour covers
    matters more than a dot), within a kind by the size of the part inside the tile (area for
    polygons, length for lines), largest first, then by key. The order is total, so captions are reproducible
    whatever order the objects arrived in.
    """

    def __init__(self, objects: Iterable[OsmObject]) -> None:
        kept = [o for o in objects if o.ok]
        self._objects: list[OsmObject] = kept
        self._geoms = np.array([o.geometry for o in kept], dtype=object)
        self._keys = np.array([o.key for o in kept], dtype=object)
        self._dims = shapely.get_dimensions(self._geoms) if kept else np.zeros(0, dtype=int)
        self._tree = shapely.STRtree(self._geoms)

    def __len__(self) -> int:
        return len(self._objects)

    def around(self, obj: OsmObject, tile: BaseGeometry, max_n: int) -> list[OsmObject]:
        """Up to ``max_n`` other objects intersecting ``tile`` (WGS84), most relevant first.

        ``obj`` itself, and any object sharing its key (the same OSM element read twice), is
        excluded. Objects that only touch the tile's edge count as intersecting; that is what
        a pixel on the border shows.
        """
        if max_n < 0:
            raise BadInputError(f"max_n must be >= 0, got {max_n}")
        if max_n == 0 or tile is None or tile.is_empty or not self._objects:
            return []
        idx = self._tree.query(tile, predicate="intersects")
        if idx.size == 0:
            return []
        idx = idx[self._keys[idx] != obj.key]
        if idx.size == 0:
            return []
        inside = _clip(self._geoms[idx], tile)
        area = shapely.area(inside)
        length = shapely.length(inside)
        dims = self._dims[idx]
        keys = self._keys[idx].astype(str)
        # np.lexsort sorts by the last key first: dimension desc, area desc, length desc, key asc.
        order = np.lexsort((keys, -length, -area, -dims))
        return [self._objects[i] for i in idx[order[:max_n]]]


def _clip(geoms: np.ndarray, tile: BaseGeometry) -> np.ndarray:
    """The parts of ``geoms`` inside the tile's bounding box, only to rank them by size.

    Rectangle clipping is about 7x faster than a general intersection (measured on central
    Helsinki) and exact for tiles that are lon/lat rectangles. A tile cut in a projected CRS is
    a slightly rotated quadrilateral in lon/lat (grid convergence, a few degrees at most), so its
    bounding box adds thin corner slivers; that can only nudge the size of objects lying in
    them. Which objects count as inside stays exact (the STRtree ``intersects`` query).
    """
    try:
        return shapely.clip_by_rect(geoms, *tile.bounds)
    except GEOSException:
        # A badly broken ring can make GEOS throw; make_valid is slow, so only on failure.
        return shapely.clip_by_rect(shapely.make_valid(geoms), *tile.bounds)
