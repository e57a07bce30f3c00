"""Where samples go: points uniform over land by area, and windows on a scene's grid.

Points follow the random-cells plan of :mod:`pipeline.osm.cells` (longitude uniform,
sin(latitude) uniform: equal area; kept when the land mask says land), drawn one
sample at a time from a generator seeded by (seed, sample index), so any sample can be
redone alone — which is what makes shards resumable and runs reproducible.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import shapely
from pyproj import Transformer
from rasterio.transform import Affine
from shapely.geometry.base import BaseGeometry

from pipeline.errors import BadInputError
from pipeline.osm.landmask import LandMask
from pipeline.satclip.scenes import Scene

WORLD = (-180.0, -90.0, 180.0, 90.0)


def draw_point(
    rng: np.random.Generator,
    box: tuple[float, float, float, float] = WORLD,
    land: LandMask | None = None,
    area: BaseGeometry | None = None,
    batch: int = 256,
    max_batches: int = 4000,
) -> tuple[float, float]:
    """One (lon, lat) uniform by area inside ``box`` (and ``area``), on land when ``land`` is given."""
    west, south, east, north = box
    lo, hi = math.sin(math.radians(south)), math.sin(math.radians(north))
    for _ in range(max_batches):
        lat = np.degrees(np.arcsin(rng.uniform(lo, hi, batch)))
        lon = rng.uniform(west, east, batch)
        keep = np.ones(batch, dtype=bool)
        if land is not None:
            keep &= land.is_land(lat, lon)
        if area is not None:
            keep &= shapely.contains_xy(area, lon, lat)
        hits = np.flatnonzero(keep)
        if len(hits):
            i = int(hits[0])
            return float(lon[i]), float(lat[i])
    raise BadInputError(
        f"no {'land ' if land is not None else ''}point found in {box} after {batch * max_batches} draws: "
        "the region (or the scenes' footprints) holds no land; widen --region or pass --no-land"
    )


_local = threading.local()


def _transformer(src: str, dst: str) -> Transformer:
    """Cached per thread: the sampler's worker threads never share a PROJ context."""
    cache = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = {}
    key = (src, dst)
    if key not in cache:
        cache[key] = Transformer.from_crs(src, dst, always_xy=True)
    return cache[key]


def _to_crs(crs: str) -> Transformer:
    return _transformer("EPSG:4326", crs)


def _to_lonlat(crs: str) -> Transformer:
    return _transformer(crs, "EPSG:4326")


def window_at(scene: Scene, lon: float, lat: float, size: int) -> tuple[int, int]:
    """Offsets of the size×size window centred (as near as the scene edge allows) on (lon, lat)."""
    x, y = _to_crs(scene.crs).transform(lon, lat)
    col, row = ~Affine(*scene.transform) * (x, y)
    col_off = int(np.clip(round(col - size / 2), 0, scene.width - size))
    row_off = int(np.clip(round(row - size / 2), 0, scene.height - size))
    return col_off, row_off


def random_window(rng: np.random.Generator, scene: Scene, size: int) -> tuple[int, int]:
    """A uniformly random window; a scene exactly one window large has exactly one."""
    return int(rng.integers(0, scene.width - size + 1)), int(rng.integers(0, scene.height - size + 1))


def window_centre(scene: Scene, col_off: int, row_off: int, size: int) -> tuple[float, float]:
    """(lon, lat) of the window's centre — the coordinates S2-100K's index.csv holds."""
    x, y = Affine(*scene.transform) * (col_off + size / 2, row_off + size / 2)
    lon, lat = _to_lonlat(scene.crs).transform(x, y)
    return float(lon), float(lat)


def empty_fractions(pixels: np.ndarray, nodata: float | None) -> tuple[float, float]:
    """(fraction of pixels empty in all bands: NaN or nodata, fraction zero in all bands)."""
    empty = np.zeros(pixels.shape[1:], dtype=bool)
    if np.issubdtype(pixels.dtype, np.floating):
        empty |= np.isnan(pixels).all(axis=0)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        empty |= (pixels == nodata).all(axis=0)
    zero = (pixels == 0).all(axis=0)
    return float(empty.mean()), float(zero.mean())


def to_uint16(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint16:
        return pixels
    arr = np.nan_to_num(pixels.astype(np.float64), nan=0.0)
    return np.clip(np.rint(arr), 0, 65535).astype(np.uint16)
