"""Windowed read + reprojection of one raster onto a request grid.

Only the source window under the request (plus a small pad for the resampling kernel) is
read, decimated on read when the request is much coarser than the raster (GDAL then uses
overviews when the file has them). Two paths, because nodata-aware resampling is ~3x slower:

- the window holds no masked pixel (the usual orthophoto): bands are reprojected in their own
  dtype with no nodata, and a dst pixel is empty only if it falls outside the raster (found by
  reprojecting a constant band with nearest, skipped when the window lies wholly inside);
- otherwise (nodata, alpha, internal masks, NaN): float32 with NaN as nodata, so masked source
  pixels never bleed into the bilinear/cubic result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import WindowError
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window, from_bounds

from pipeline.records import ChipRequest

PAD_PX = 2  # source pixels read beyond the request so the resampling kernel has neighbours


def source_window(ds: Any, request: ChipRequest) -> tuple[Window, bool] | None:
    """The raster window under ``request`` (padded, clipped) and whether it needed clipping."""
    src_bounds = transform_bounds(request.crs, ds.crs, *request.bounds, densify_pts=21)
    win = from_bounds(*src_bounds, transform=ds.transform)
    win = Window(win.col_off - PAD_PX, win.row_off - PAD_PX, win.width + 2 * PAD_PX, win.height + 2 * PAD_PX)
    win = win.round_offsets(op="floor").round_lengths(op="ceil")
    try:
        clipped = win.intersection(Window(0, 0, ds.width, ds.height))
    except WindowError:
        return None  # the request lies outside this raster
    return clipped, clipped != win


def warp_to_grid(
    ds: Any, bands: Sequence[int], request: ChipRequest, resampling: Resampling
) -> tuple[np.ndarray, list[int]]:
    """(len(bands), H, W) float32 on the request grid, NaN where there is no data; and the window read."""
    empty = np.full((len(bands), request.height, request.width), np.nan, dtype=np.float32)
    found = source_window(ds, request)
    if found is None:
        return empty, [0, 0, 0, 0]
    win, clipped = found
    window = [int(win.col_off), int(win.row_off), int(win.width), int(win.height)]
    # Decimate on read to ~2x the request resolution; bilinear then has real neighbours to blend.
    factor = max(1, int(min(win.width / request.width, win.height / request.height) // 2))
    out_h, out_w = math.ceil(win.height / factor), math.ceil(win.width / factor)
    src = ds.read(
        list(bands),
        window=win,
        out_shape=(len(bands), out_h, out_w),
        masked=True,
        resampling=Resampling.average if factor > 1 and resampling != Resampling.nearest else Resampling.nearest,
    )
    wt, sx, sy = ds.window_transform(win), win.width / out_w, win.height / out_h
    common = {
        "src_transform": Affine(wt.a * sx, wt.b * sy, wt.c, wt.d * sx, wt.e * sy, wt.f),
        "src_crs": ds.crs,
        "dst_transform": Affine(*request.transform),
        "dst_crs": request.crs,
        "num_threads": 1,
    }
    invalid = np.ma.getmaskarray(src)
    data = np.asarray(src.data)
    if data.dtype.kind == "f":
        invalid = invalid | ~np.isfinite(data)
    if invalid.any():
        arr = np.where(invalid, np.nan, data).astype(np.float32)
        reproject(arr, empty, src_nodata=np.nan, dst_nodata=np.nan, resampling=resampling, **common)
        return empty, window
    arr = data.astype(np.float32) if data.dtype == np.float64 else data  # GDAL warps float32 faster
    out = np.zeros((len(bands), request.height, request.width), dtype=arr.dtype)
    reproject(arr, out, resampling=resampling, **common)
    result = out.astype(np.float32)
    if clipped:  # part of the request may fall off the raster: find those pixels
        inside = np.zeros((1, request.height, request.width), dtype=np.uint8)
        reproject(np.ones((1, out_h, out_w), np.uint8), inside, resampling=Resampling.nearest, **common)
        result[:, inside[0] == 0] = np.nan
    return result, window
