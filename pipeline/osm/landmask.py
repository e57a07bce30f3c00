"""Land/ocean lookup for the cell plan, from the ``global-land-mask`` package.

Why this package: it ships the GLOBE 1 km land/ocean grid inside a 2.5 MB wheel, works
offline, needs no GDAL or shapefile reading and answers vectorised point queries; 1 km is
finer than a 0.01° cell (~1.1 km). Natural Earth polygons (e.g. via geopandas datasets)
would need point-in-polygon tests over millions of draws and are coarser at 1:10m.

Its own ``globe`` module inflates the grid to a 933 MB boolean array on import (about 10 s).
We stream the same grid once into a bit-packed ``.npy`` (117 MB) in a cache folder and
memory-map it, so later runs start instantly and touch only the pages they sample.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np

from pipeline.errors import InputFileError

_NPZ = "globe_combined_mask_compressed.npz"
_VERSION = "v1"


def _npz_path() -> Path:
    return Path(str(resources.files("global_land_mask").joinpath(_NPZ)))


def default_cache_dir() -> Path:
    from pipeline.cache import cache_dir

    return cache_dir("landmask")


def iter_mask_rows(chunk_rows: int = 600) -> Iterator[tuple[int, np.ndarray, tuple[int, int]]]:
    """(first row, boolean rows, full shape) of the package's mask, a chunk at a time."""
    with zipfile.ZipFile(_npz_path()) as zf, zf.open("mask.npy") as fh:
        major, _minor = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(fh)
        if fortran or dtype != np.bool_ or len(shape) != 2 or shape[1] % 8:
            raise InputFileError(f"unexpected land mask layout in {_npz_path()}: {shape} {dtype}")
        rows, cols = shape
        for start in range(0, rows, chunk_rows):
            n = min(chunk_rows, rows - start)
            buf = fh.read(n * cols)
            yield start, np.frombuffer(buf, dtype=np.bool_).reshape(n, cols), (rows, cols)


class LandMask:
    """``is_land(lat, lon)`` with the same grid and indexing as ``global_land_mask.globe``."""

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None) -> None:
        bits_path, grid_path = self._ensure_cache(Path(cache_dir) if cache_dir else default_cache_dir())
        grid = json.loads(grid_path.read_text())
        self.lat0, self.dlat, self.lat_min, self.lat_max = grid["lat"]
        self.lon0, self.dlon, self.lon_min, self.lon_max = grid["lon"]
        self.bits = np.load(bits_path, mmap_mode="r")

    def _ensure_cache(self, cache_dir: Path) -> tuple[Path, Path]:
        path = cache_dir / f"land_mask_packed_{_VERSION}.npy"
        grid_path = path.with_suffix(".json")
        if path.is_file() and grid_path.is_file():
            return path, grid_path
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
        out = None
        for start, rows, (n_rows, n_cols) in iter_mask_rows():
            if out is None:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n_rows, n_cols // 8))
            out[start : start + len(rows)] = np.packbits(rows, axis=1)
        if out is None:
            raise InputFileError(f"the land mask in {_npz_path()} is empty; reinstall global-land-mask")
        out.flush()
        del out  # close the memmap before the rename
        with zipfile.ZipFile(_npz_path()) as zf:
            axes = {k: np.lib.format.read_array(zf.open(f"{k}.npy")) for k in ("lat", "lon")}
        grid = {k: [float(a[0]), float(a[1] - a[0]), float(a.min()), float(a.max())] for k, a in axes.items()}
        tmp_grid = grid_path.with_name(f".{grid_path.name}.{os.getpid()}.tmp")
        tmp_grid.write_text(json.dumps(grid))
        os.replace(tmp, path)
        os.replace(tmp_grid, grid_path)
        return path, grid_path

    def index(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lat = np.clip(np.asarray(lat, dtype=float), self.lat_min, self.lat_max)
        lon = np.clip(np.asarray(lon, dtype=float), self.lon_min, self.lon_max)
        return ((lat - self.lat0) / self.dlat).astype(int), ((lon - self.lon0) / self.dlon).astype(int)

    def is_ocean(self, lat: np.ndarray | float, lon: np.ndarray | float) -> np.ndarray:
        """The package's grid marks *ocean* cells (lakes mostly count as land)."""
        i, j = self.index(np.atleast_1d(lat), np.atleast_1d(lon))
        return ((self.bits[i, j >> 3] >> (7 - (j & 7))) & 1).astype(bool)

    def is_land(self, lat: np.ndarray | float, lon: np.ndarray | float) -> np.ndarray:
        return ~self.is_ocean(lat, lon)

    def any_land(self, west: float, south: float, east: float, north: float) -> bool:
        """Whether any mask pixel in the box is land (exact up to the 8-pixel byte packing, ~0.07°).

        Reads the packed rows directly, so a 1 km island in a 30° tile is not missed.
        """
        rows, cols = self.index(np.array([north, south]), np.array([west, east]))
        i_top, i_bottom = sorted(int(v) for v in rows)
        j_left, j_right = sorted(int(v) for v in cols)
        block = self.bits[i_top : i_bottom + 1, j_left >> 3 : (j_right >> 3) + 1]
        return bool((block != 0xFF).any())
