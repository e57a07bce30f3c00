"""Seeded GRAFT fixtures: a UTM raster with a red mark under every photo, photo files and a table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from pyproj import Geod, Transformer
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin

from tests.imagery.synth import write_raster

CENTRE = (9.0, 45.5)  # UTM 32N
CRS = "EPSG:32632"
RASTER_PX = 1400  # 1 m pixels: a 1.4 km square
MARK = 2  # the mark is (2*MARK+1)^2 pixels


def photo_points(n: int, seed: int, spread_m: float = 450.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lons, lats, _ = Geod(ellps="WGS84").fwd(np.full(n, CENTRE[0]), np.full(n, CENTRE[1]), rng.uniform(0, 360, n),
                                              rng.uniform(0, spread_m, n))
    return np.asarray(lons), np.asarray(lats)


def marked_raster(folder: Path, lons: np.ndarray, lats: np.ndarray, acquired: str = "2021:06:15 10:00:00") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tr = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
    cx, cy = tr.transform(*CENTRE)
    x0, y1 = float(np.floor(cx - RASTER_PX / 2)), float(np.floor(cy + RASTER_PX / 2))
    data = np.full((3, RASTER_PX, RASTER_PX), 90, dtype=np.uint8)
    data[1] = 110
    xs, ys = tr.transform(lons, lats)
    for x, y in zip(xs, ys, strict=True):
        c, r = int(np.floor(x - x0)), int(np.floor(y1 - y))
        data[:, r - MARK : r + MARK + 1, c - MARK : c + MARK + 1] = np.array([255, 0, 0], np.uint8)[:, None, None]
    return write_raster(folder / "utm_rgb.tif", data, CRS, from_origin(x0, y1, 1.0, 1.0),
                        colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue],
                        tags={"TIFFTAG_DATETIME": acquired})


def photo_file(path: Path, seed: int, size: tuple[int, int] = (120, 90)) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, format="JPEG")
    return path


def photo_table(folder: Path, n: int = 60, seed: int = 0, *, outside: int = 3, missing: int = 2) -> Path:
    """``n`` dated photos around CENTRE with files, ``missing`` whose files do not exist and
    ``outside`` far away (no imagery there); returns the CSV path."""
    lons, lats = photo_points(n, seed)
    photos_dir = folder / "photos"
    photos_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (lo, la) in enumerate(zip(lons, lats, strict=True)):
        name = f"img_{i:03d}.jpg"
        if i >= missing:
            photo_file(photos_dir / name, seed * 1000 + i)
        rows.append({"PhotoID": f"ph{i:03d}", "Latitude": la, "Longitude": lo,
                     "DateTaken": f"2021-0{4 + i % 3}-{1 + i % 28:02d} 12:00:00", "file": f"photos/{name}"})
    for j in range(outside):
        rows.append({"PhotoID": f"far{j}", "Latitude": 10.0 + j, "Longitude": 20.0, "DateTaken": "2021-05-01",
                     "file": f"photos/far{j}.jpg"})
        photo_file(photos_dir / f"far{j}.jpg", 99 + j)
    p = folder / "photos.csv"
    pd.DataFrame(rows).to_csv(p, index=False)
    return p
