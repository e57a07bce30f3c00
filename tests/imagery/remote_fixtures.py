"""Seeded UTM rasters and catalog files shared by the STAC and Earth Engine source tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin

from pipeline.records import ChipRequest
from tests.servers.stac_api import write_cog

CRS = "EPSG:32632"  # UTM 32N (around 9°E)
X0, Y0 = 500_000.0, 5_300_000.0  # upper-left of scene A (≈ 9.0°E, 47.85°N)
RES = 0.5
SIZE = 512


def scene(folder: Path, name: str, x0: float, y0: float, seed: int, *, nodata_cols: int = 0) -> Path:
    """A 512x512 RGB uint8 COG on the UTM grid (noise, so any misplaced pixel shows)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(1, 255, size=(3, SIZE, SIZE), dtype=np.uint8)
    profile = {"driver": "GTiff", "width": SIZE, "height": SIZE, "count": 3, "dtype": "uint8", "crs": CRS,
               "transform": from_origin(x0, y0, RES, RES), "tiled": True, "blockxsize": 256, "blockysize": 256}
    if nodata_cols:
        data[:, :, :nodata_cols] = 0
        profile["nodata"] = 0
    tmp = folder / f"{name}.src.tif"
    with rasterio.open(tmp, "w", **profile) as ds:
        ds.write(data)
        ds.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    out = write_cog(folder / f"{name}.tif", tmp)
    tmp.unlink()
    return out


def request(key: str, col: int, row: int, px: int, collection: str, gsd: float = RES) -> ChipRequest:
    """A request whose grid is aligned with scene A's pixels (col/row offsets from its corner)."""
    x0, y1 = X0 + col * RES, Y0 - row * RES
    bounds = (x0, y1 - px * gsd, x0 + px * gsd, y1)
    from pipeline.imagery.georef import transformer

    bbox = transformer(CRS, "EPSG:4326").transform_bounds(*bounds, densify_pts=21)
    return ChipRequest(key=key, osm_type="way", osm_id=1, bbox=tuple(bbox), crs=CRS, bounds=bounds,
                       width=px, height=px, gsd=gsd, collection=collection, seed=0)


def direct(path: Path, col: int, row: int, px: int) -> np.ndarray:
    """HxWx3 pixels read straight from a file's window (the expected chip)."""
    with rasterio.open(path) as ds:
        return ds.read(window=((row, row + px), (col, col + px))).transpose(1, 2, 0)


def catalog_file(folder: Path, text: str) -> Path:
    path = folder / "catalog.yaml"
    path.write_text(text)
    return path
