"""Seeded 12-band uint16 scenes (no shared data needed): multi-band files and per-band COG assets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds

from pipeline.satclip.scenes import S2_BANDS

# UTM 32N over Hesse, Germany: land for the land mask.
CRS = "EPSG:32632"
X0, Y0 = 500_000.0, 5_600_000.0
COARSE = {"B01": 60, "B09": 60, "B05": 20, "B06": 20, "B07": 20, "B8A": 20, "B11": 20, "B12": 20}


def scene_pixels(width: int, height: int, seed: int) -> np.ndarray:
    """Smooth-ish, non-zero reflectances: every band differs, no pixel is zero in all bands."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = 1500 + 500 * np.sin(xx / 37.0) * np.cos(yy / 23.0)
    bands = [base * (0.5 + 0.1 * b) + rng.integers(0, 300, (height, width)) for b in range(len(S2_BANDS))]
    return np.clip(np.stack(bands), 1, 65535).astype(np.uint16)


def write_scene(
    path: Path,
    width: int = 600,
    height: int = 500,
    seed: int = 0,
    x0: float = X0,
    y0: float = Y0,
    tags: dict[str, str] | None = None,
    zero_cols: int = 0,
    count: int = 12,
    nodata: float | None = None,
    crs: str = CRS,
    res: float = 10.0,
) -> Path:
    """A tiled multi-band scene; the first ``zero_cols`` columns are 0 in all bands (S2 nodata)."""
    data = scene_pixels(width, height, seed)[:count]
    if zero_cols:
        data[:, :, :zero_cols] = 0
    profile: dict[str, Any] = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype="uint16",
        crs=crs,
        transform=from_origin(x0, y0, res, res),
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
    )
    if nodata is not None:
        profile["nodata"] = nodata
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        ds.update_tags(**(tags or {}))
    return path


def write_band_assets(
    folder: Path, name: str, pixels: np.ndarray, crs: str, x0: float, y0: float, coarse: bool = True
) -> dict[str, Path]:
    """One COG per band (20 m / 60 m bands decimated from the 10 m pixels when ``coarse``)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, band in enumerate(S2_BANDS):
        step = COARSE.get(band, 10) // 10 if coarse else 1
        arr = pixels[i, ::step, ::step]
        path = folder / f"{name}_{band}.tif"
        with rasterio.open(
            path,
            "w",
            driver="COG",
            width=arr.shape[1],
            height=arr.shape[0],
            count=1,
            dtype="uint16",
            crs=crs,
            transform=from_origin(x0, y0, 10.0 * step, 10.0 * step),
            compress="deflate",
            blocksize=256,
            nodata=0,
        ) as ds:
            ds.write(arr, 1)
        out[band] = path
    return out


def stac_item(
    item_id: str,
    assets: dict[str, Path],
    base_url: str,
    crs: str,
    x0: float,
    y0: float,
    width: int,
    height: int,
    props: dict[str, Any],
    with_proj: bool = True,
) -> dict[str, Any]:
    west, south, east, north = transform_bounds(crs, "EPSG:4326", x0, y0 - 10 * height, x0 + 10 * width, y0)
    item_assets: dict[str, Any] = {}
    for band, path in assets.items():
        asset: dict[str, Any] = {"href": f"{base_url}/files/{path.name}", "type": "image/tiff; application=geotiff"}
        if with_proj and band == "B02":
            asset["proj:transform"] = [10.0, 0.0, x0, 0.0, -10.0, y0]
            asset["proj:shape"] = [height, width]
        item_assets[band] = asset
    properties = {"datetime": "2022-06-01T10:00:00Z", "eo:cloud_cover": 5.0, "platform": "sentinel-2a", **props}
    if with_proj:
        properties["proj:epsg"] = int(crs.split(":")[1])
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "collection": "sentinel-2-l2a",
        "bbox": [west, south, east, north],
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[west, south], [east, south], [east, north], [west, north], [west, south]]],
        },
        "properties": properties,
        "assets": item_assets,
        "links": [],
    }


def dump(obj: Any) -> bytes:
    return json.dumps(obj).encode()
