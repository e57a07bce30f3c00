"""Independent checks of a GRAFT plan: recomputed with pyproj/affine, not with the tiler's code."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from affine import Affine
from pyproj import Transformer


def _pixels(tile: dict[str, Any], lons: list[float], lats: list[float]) -> tuple[np.ndarray, np.ndarray]:
    tr = Transformer.from_crs("EPSG:4326", tile["crs"], always_xy=True)
    x, y = tr.transform(np.asarray(lons), np.asarray(lats))
    inv = ~Affine(*tile["transform"])
    col, row = inv * (np.asarray(x), np.asarray(y))
    return np.asarray(col), np.asarray(row)


def check_plan(tiles: list[dict[str, Any]], photos: list[dict[str, Any]], tile_px: int, gsd: float,
               cap: int = 25) -> None:
    by_tile: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in photos:
        by_tile[p["tile_id"]].append(p)
    ids = [p["photo_id"] for p in photos]
    assert len(ids) == len(set(ids)), "a photo is in more than one tile"
    tile_ids = [t["tile_id"] for t in tiles]
    assert len(tile_ids) == len(set(tile_ids))
    assert set(by_tile) == set(tile_ids)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in tiles:
        members = by_tile[t["tile_id"]]
        assert t["width"] == t["height"] == tile_px and t["n_photos"] == len(members) <= cap
        col, row = _pixels(t, [m["lon"] for m in members], [m["lat"] for m in members])
        assert ((col >= 0) & (col < tile_px) & (row >= 0) & (row < tile_px)).all(), "photo outside its tile"
        np.testing.assert_allclose(col, [m["px_x"] for m in members], atol=1e-4)
        np.testing.assert_allclose(row, [m["px_y"] for m in members], atol=1e-4)
        # The centre photo sits in the middle of the tile.
        c, r = _pixels(t, [t["lon"]], [t["lat"]])
        assert abs(c[0] - tile_px / 2) < 1e-4 and abs(r[0] - tile_px / 2) < 1e-4
        a, b, _, d, e, _ = t["transform"]
        assert a == gsd and e == -gsd and b == d == 0
        groups[t["group"]].append(t)
    for members in groups.values():
        members.sort(key=lambda t: t["tile_id"])  # creation order
        for i, ti in enumerate(members):
            later = members[i + 1 :]
            if not later:
                continue
            # Later centres were unassigned when ti was made, so outside it: ≥ tile_px/2 pixels away.
            col, row = _pixels(ti, [t["lon"] for t in later], [t["lat"] for t in later])
            cheb = np.maximum(np.abs(col - tile_px / 2), np.abs(row - tile_px / 2))
            assert (cheb >= tile_px / 2 - 1e-6).all(), "tile centres closer than tile_px/2"
            # Greedy: no photo of a later tile lies inside an earlier tile of the group.
            lp = [p for t in later for p in by_tile[t["tile_id"]]]
            col, row = _pixels(ti, [p["lon"] for p in lp], [p["lat"] for p in lp])
            inside = (col >= 0) & (col < tile_px) & (row >= 0) & (row < tile_px)
            assert not inside.any(), "a photo inside an earlier tile joined a later one"
