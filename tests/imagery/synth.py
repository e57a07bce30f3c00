"""Tiny seeded rasters written into tmp_path (no shared data needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin

# A Web-Mercator scene at 60°N, where a projected metre is half a ground metre.
MERC_LON, MERC_LAT = 24.94, 60.17
MERC_RES = 0.2  # projected metres; ground GSD = 0.2 * cos(60.17°) ≈ 0.0997 m
MARK_PX = 8  # half-size of the red marker painted at (MERC_LON, MERC_LAT)


def write_raster(
    path: Path,
    data: np.ndarray,
    crs: str | None,
    transform: rasterio.Affine | None,
    *,
    nodata: float | None = None,
    colorinterp: Sequence[ColorInterp] | None = None,
    descriptions: Sequence[str] | None = None,
    tags: dict[str, str] | None = None,
) -> Path:
    """Write a tiled GeoTIFF (COG-like block layout) from a (bands, H, W) array."""
    count, height, width = data.shape
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": data.dtype.name,
        "tiled": True,
        "blockxsize": 64,
        "blockysize": 64,
    }
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        if colorinterp is not None:
            ds.colorinterp = colorinterp
        for i, d in enumerate(descriptions or []):
            ds.set_band_description(i + 1, d)
        if tags:
            ds.update_tags(**tags)
    return path


def merc_rgb(folder: Path, name: str = "merc_rgb.tif", size: int = 512, seed: int = 0) -> Path:
    """RGB uint8 in EPSG:3857 centred on (MERC_LON, MERC_LAT), noisy grey with a red marker there."""
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(MERC_LON, MERC_LAT)
    half = size * MERC_RES / 2.0
    rng = np.random.default_rng(seed)
    data = rng.integers(60, 120, size=(3, size, size), dtype=np.uint8)
    c = size // 2
    data[:, c - MARK_PX : c + MARK_PX, c - MARK_PX : c + MARK_PX] = np.array([250, 0, 0], np.uint8)[:, None, None]
    return write_raster(
        folder / name,
        data,
        "EPSG:3857",
        from_origin(x - half, y + half, MERC_RES, MERC_RES),
        colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue],
        tags={"TIFFTAG_DATETIME": "2021:06:15 10:00:00"},
    )


def utm_grey(folder: Path, name: str = "utm_grey.tif") -> Path:
    """Single-band uint16 in UTM 33N, 10 m pixels, 100x100; the left 20 columns are no-data (0)."""
    data = (np.arange(100 * 100, dtype=np.uint16).reshape(1, 100, 100) % 5000) + 100
    data[:, :, :20] = 0
    return write_raster(folder / name, data, "EPSG:32633", from_origin(500000, 6000000, 10, 10), nodata=0)


def wgs84_float(folder: Path, name: str = "wgs84_float.tif") -> Path:
    """4-band float32 reflectance (0.15 everywhere, NIR 0.4) in EPSG:4326 near Eemshaven."""
    data = np.full((4, 60, 80), 0.15, dtype=np.float32)
    data[3] = 0.4
    return write_raster(folder / name, data, "EPSG:4326", from_origin(6.86, 53.42, 1e-4, 1e-4))


def s2_stack(folder: Path, name: str = "s2.tif", descriptions: Sequence[str] | None = None) -> Path:
    """12-band uint16 stack, band k holds 100*k (so the chosen bands can be read back), UTM 32N."""
    data = np.stack([np.full((64, 64), 100 * (k + 1), dtype=np.uint16) for k in range(12)])
    return write_raster(
        folder / name, data, "EPSG:32632", from_origin(400000, 5900000, 10, 10), descriptions=descriptions
    )


def no_crs(folder: Path, name: str = "nocrs.tif") -> Path:
    return write_raster(folder / name, np.ones((1, 16, 16), np.uint8), None, None)


def corrupt(folder: Path, name: str = "corrupt.tif") -> Path:
    path = folder / name
    path.write_bytes(b"II*\x00" + bytes(range(256)) * 4)  # a TIFF magic number, then junk
    return path
