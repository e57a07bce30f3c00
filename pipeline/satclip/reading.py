"""Windowed reads on a scene's 10 m grid, from one multi-band file or one file per band.

Bands stored coarser (S2's 20 m and 60 m bands) are read over the same ground window
and resampled to the 10 m grid with nearest neighbour, as stackstac (which made S2-100K)
does by default. Reads over HTTP go through GDAL's curl driver: one ``rasterio.Env``
with directory listing off (a COG needs no sidecar lookups) and bounded retries.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.transform import Affine
from rasterio.windows import from_bounds

from pipeline.satclip.scenes import S2_BANDS, Scene, SceneGoneError, SceneReadError

# Settings for COGs over HTTP; the retry count covers 429/5xx answers of a busy server.
HTTP_ENV = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MAX_RETRY": "4",
    "GDAL_HTTP_RETRY_DELAY": "0.5",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF",
    "GDAL_HTTP_MULTIRANGE": "YES",
}


@contextmanager
def gdal_env() -> Iterator[None]:
    with rasterio.Env(**HTTP_ENV):
        yield


def window_bounds(scene: Scene, col_off: int, row_off: int, size: int) -> tuple[float, float, float, float]:
    t = Affine(*scene.transform)
    x0, y0 = t * (col_off, row_off)
    x1, y1 = t * (col_off + size, row_off + size)
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def _is_gone(exc: Exception) -> bool:
    text = str(exc)
    return "404" in text or "No such file" in text or "does not exist" in text


def read_window(scene: Scene, col_off: int, row_off: int, size: int) -> tuple[np.ndarray, float | None]:
    """(12 × size × size, nodata) of the window; raises SceneGoneError / SceneReadError."""
    if col_off < 0 or row_off < 0 or col_off + size > scene.width or row_off + size > scene.height:
        raise SceneReadError(
            f"window ({col_off}, {row_off}, {size}) lies outside scene {scene.scene_id} ({scene.width}×{scene.height})",
            "window",
        )
    bounds = window_bounds(scene, col_off, row_off, size)
    n = len(S2_BANDS)
    nodata: float | None = None
    with gdal_env():
        if len(scene.hrefs) == 1:
            arr, nodata = _read_file(scene, scene.hrefs[0], bounds, size, expect=n)
            return arr, nodata
        if len(scene.hrefs) != n:
            raise SceneReadError(f"scene {scene.scene_id} has {len(scene.hrefs)} band files, {n} needed", "bands")
        planes = []
        for href in scene.hrefs:
            arr, nd = _read_file(scene, href, bounds, size, expect=1)
            nodata = nd if nodata is None else nodata
            planes.append(arr[0])
        return np.stack(planes), nodata


def _read_file(
    scene: Scene, href: str, bounds: tuple[float, float, float, float], size: int, expect: int
) -> tuple[np.ndarray, float | None]:
    try:
        with rasterio.open(href) as ds:
            if ds.count != expect:
                raise SceneReadError(
                    f"{href} has {ds.count} bands, {expect} expected "
                    f"({'/'.join(S2_BANDS) if expect > 1 else 'one band per asset'})",
                    "bands",
                )
            win = from_bounds(*bounds, transform=ds.transform)
            arr = ds.read(
                window=win,
                out_shape=(expect, size, size),
                resampling=Resampling.nearest,
                boundless=False,
            )
            return arr, ds.nodata
    except RasterioIOError as exc:
        if _is_gone(exc):
            raise SceneGoneError(f"scene {scene.scene_id} vanished: {href} is no longer readable ({exc})") from exc
        raise SceneReadError(f"cannot read {href}: {exc}") from exc
