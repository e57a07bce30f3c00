"""``gee:PROJECT``: Sentinel-2 scenes from Earth Engine for the SatCLIP sampler.

Scenes are the images of ``COPERNICUS/S2_SR_HARMONIZED`` (or the ``--collection`` given)
filtered by bounds, date range and ``CLOUDY_PIXEL_PERCENTAGE``. A draw makes one metadata
request: ``value:compute`` of the filtered collection, sorted by ``system:index`` and limited,
whose ``getInfo`` answer carries each image's band grids (CRS, affine transform, dimensions) and
properties. The 10 m grid is the ``B2`` band's: the scene's own UTM grid, as Earth Engine
stores it. A patch is then ONE ``image:computePixels`` request (NPY) of the 12 S2-100K bands,
masked pixels unmasked to 0 (Sentinel-2's nodata) and cast to uint16, on exactly that grid
shifted to the window: 20 m and 60 m bands come back resampled nearest onto it, no reprojection.

Initialisation (credentials chain, endpoint from ``imagery.gee.url`` / ``SKYSCRIPT_EE_URL``),
the machine-wide request slots and the status-aware retries are those of
:class:`pipeline.imagery.gee.GeeSource`, which this class holds as its client.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

import numpy as np
from pyproj import CRS
from rasterio.transform import Affine
from rasterio.warp import transform_bounds

from pipeline.config import ImageryConfig
from pipeline.errors import BadInputError, ImageryError
from pipeline.imagery.gee import GeeSource, _iso
from pipeline.retry import RetryPolicy
from pipeline.satclip.scenes import GSD, S2_BANDS, Scene, SceneFilter, SceneGoneError, SceneReadError

EE_COLLECTION = "COPERNICUS/S2_SR_HARMONIZED"
# The sampler's default --collection is the STAC name; on Earth Engine it means this collection.
ALIASES = {"sentinel-2-l2a": EE_COLLECTION}
# Earth Engine names the Sentinel-2 bands without the zero: B1 .. B9, B8A, B11, B12.
EE_BANDS = tuple(b if b == "B8A" else f"B{int(b[1:])}" for b in S2_BANDS)
GRID_BAND = "B2"  # a 10 m band: its grid is the scene's 10 m grid
CLOUD = "CLOUDY_PIXEL_PERCENTAGE"
PAGE = 500  # images per metadata request when listing a region (--by scene)
NODATA = 0.0  # Sentinel-2 L2A nodata; Earth Engine masks it, the request unmasks it back to 0


class GeeScenes:
    """The sampler's :class:`~pipeline.satclip.scenes.SceneSource` over Earth Engine."""

    name = "gee"

    def __init__(
        self,
        project: str,
        collection: str = EE_COLLECTION,
        max_items: int = 50,
        max_scenes: int = 10_000,
        cfg: ImageryConfig | None = None,
        policy: RetryPolicy | None = None,
        timeout_s: float = 120.0,
    ) -> None:
        self.collection = ALIASES.get(collection, collection)
        self.max_items, self.max_scenes = max_items, max_scenes
        # Initialises ee now (a bad credential or endpoint is a one-line error at start-up).
        self.client = GeeSource(project, [], cfg, policy=policy, timeout_s=timeout_s)
        self._check_collection()

    def describe(self) -> dict[str, object]:
        c = self.client
        return {
            "kind": "gee",
            "project": c.project,
            "url": c.url,
            "collection": self.collection,
            "credentials": c.credential_kind,
        }

    def _check_collection(self) -> None:
        """A missing or inaccessible --collection is a start-up error, not N failed rows."""
        import ee

        try:
            self._list(f"collection {self.collection}", ee.ImageCollection(self.collection).limit(0))
        except ImageryError as exc:
            raise BadInputError(f"--collection {self.collection!r} on Earth Engine: {exc}") from exc

    # -- listing -------------------------------------------------------------------------------
    def _query(self, flt: SceneFilter, geometry: Any, after: str | None, limit: int) -> Any:
        import ee

        col = ee.ImageCollection(self.collection)
        if geometry is not None:
            col = col.filterBounds(geometry)
        if flt.start or flt.end:  # [start, end] by day; filterDate's end is exclusive
            stop = (date.fromisoformat(flt.end[:10]) + timedelta(days=1)).isoformat() if flt.end else "2200-01-01"
            col = col.filterDate(flt.start[:10] or "1970-01-01", stop)
        if flt.max_cloud < 100:
            col = col.filter(ee.Filter.lt(CLOUD, flt.max_cloud))
        if after is not None:  # the next page: system:index is unique and sorts by acquisition time
            col = col.filter(ee.Filter.gt("system:index", after))
        return col.sort("system:index").limit(limit)

    def _list(self, what: str, col: Any) -> list[dict[str, Any]]:
        """One metadata request: the images' getInfo (band grids and properties)."""
        import ee

        got = self.client._call(what, lambda: ee.data.computeValue(col))
        features = got.get("features", []) if isinstance(got, dict) else got
        return [f for f in features or [] if isinstance(f, dict)]

    def scenes_at(self, lon: float, lat: float, flt: SceneFilter) -> list[Scene]:
        import ee

        what = f"scenes of {self.collection} at ({lon:.5f}, {lat:.5f})"
        try:
            images = self._list(what, self._query(flt, ee.Geometry.Point([lon, lat]), None, self.max_items))
        except ImageryError as exc:  # a failed draw (a row if it persists), not a failed run
            raise SceneReadError(str(exc), "search_error") from exc
        return _sorted([self._scene(f) for f in images], flt)

    def all_scenes(self, flt: SceneFilter, region: tuple[float, float, float, float] | None) -> list[Scene]:
        import ee

        geometry = ee.Geometry.Rectangle(list(region), None, False) if region is not None else None
        found: list[Scene | None] = []
        seen, after = 0, None
        while seen < self.max_scenes:
            limit = min(PAGE, self.max_scenes - seen)
            page = self._list(
                f"scenes of {self.collection} in {region or 'the world'}", self._query(flt, geometry, after, limit)
            )
            seen += len(page)
            found.extend(self._scene(f) for f in page)
            if len(page) < limit:
                break
            after = str((page[-1].get("properties") or {}).get("system:index") or "")
            if not after:
                break
        return _sorted(found, flt)

    def _scene(self, image: dict[str, Any]) -> Scene | None:
        """A Scene from an image's getInfo; None without a projected 10 m ``B2`` grid."""
        props = image.get("properties") or {}
        band = next((b for b in image.get("bands") or [] if b.get("id") == GRID_BAND), None)
        if band is None or not image.get("id"):
            return None
        crs, t, dims = band.get("crs"), band.get("crs_transform"), band.get("dimensions")
        if not crs or not t or not dims or len(t) < 6:
            return None
        if abs(float(t[0]) - GSD) > 1e-6 or abs(float(t[4]) + GSD) > 1e-6 or float(t[1]) or float(t[3]):
            return None
        try:
            if CRS.from_user_input(crs).is_geographic:
                return None
        except Exception:  # pyproj.CRSError: an unknown CRS cannot hold metre windows
            return None
        transform = (float(t[0]), float(t[1]), float(t[2]), float(t[3]), float(t[4]), float(t[5]))
        width, height = int(dims[0]), int(dims[1])
        cloud = props.get(CLOUD)
        return Scene(
            scene_id=str(image["id"]),
            source=f"gee:{self.client.project}",
            crs=str(crs),
            transform=transform,
            width=width,
            height=height,
            footprint=_footprint(props.get("system:footprint"), str(crs), transform, width, height),
            hrefs=(str(image["id"]),),
            datetime=_iso(props.get("system:time_start")) or "",
            cloud_cover=float(cloud) if cloud is not None else None,
            mgrs_tile=str(props.get("MGRS_TILE") or ""),
            platform=str(props.get("SPACECRAFT_NAME") or ""),
        )

    # -- pixels --------------------------------------------------------------------------------
    def read(self, scene: Scene, col_off: int, row_off: int, size: int) -> tuple[np.ndarray, float | None]:
        """One computePixels request: 12 bands × size × size uint16 on the scene's grid at the window."""
        import ee

        a, b, _c, d, e, _f = scene.transform
        x, y = Affine(*scene.transform) * (col_off, row_off)
        img = ee.Image(scene.hrefs[0]).select(list(EE_BANDS)).unmask(0, False).toUint16()
        params = {
            "expression": img,
            "fileFormat": "NUMPY_NDARRAY",
            "grid": {
                "dimensions": {"width": size, "height": size},
                "affineTransform": {
                    "scaleX": a,
                    "shearX": b,
                    "translateX": x,
                    "shearY": d,
                    "scaleY": e,
                    "translateY": y,
                },
                "crsCode": scene.crs,
            },
        }
        what = f"pixels of {scene.scene_id} at ({col_off}, {row_off})"
        try:
            arr = self.client._call(what, lambda: ee.data.computePixels(params))
        except ImageryError as exc:
            msg = str(exc)
            if "not found" in msg.lower():
                raise SceneGoneError(f"scene {scene.scene_id} vanished after the search: {msg}") from exc
            if "did not match any bands" in msg:
                raise SceneReadError(msg, "bands") from exc
            raise SceneReadError(msg) from exc
        names = arr.dtype.names or ()
        if len(names) != len(EE_BANDS):
            raise SceneReadError(f"{what}: got bands {list(names)}, {len(EE_BANDS)} needed", "bands")
        data = np.stack([np.asarray(arr[n]) for n in names])
        if data.shape[1:] != (size, size):
            raise SceneReadError(f"{what}: got {data.shape[1:]} pixels for a {size}×{size} window")
        return data, NODATA


def _sorted(scenes: Any, flt: SceneFilter) -> list[Scene]:
    return sorted((s for s in scenes if s is not None and flt.keeps(s)), key=lambda s: s.scene_id)


def _footprint(geom: Any, crs: str, t: tuple[float, ...], width: int, height: int) -> tuple[float, float, float, float]:
    """WGS84 bounds of ``system:footprint``; the grid's bounds when it is absent."""
    coords = np.asarray(_flatten(geom.get("coordinates") if isinstance(geom, dict) else None), dtype=float)
    if coords.size >= 2 and np.isfinite(coords).all():
        xy = coords.reshape(-1, 2)
        return float(xy[:, 0].min()), float(xy[:, 1].min()), float(xy[:, 0].max()), float(xy[:, 1].max())
    x0, y0 = t[2], t[5]
    x1, y1 = x0 + t[0] * width, y0 + t[4] * height
    w, s, e, n = transform_bounds(crs, "EPSG:4326", min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1), densify_pts=21)
    return float(w), float(s), float(e), float(n)


def _flatten(coords: Any) -> list[float]:
    if coords is None:
        return []
    if isinstance(coords, int | float) and not isinstance(coords, bool):
        return [float(coords)] if math.isfinite(coords) else [math.nan]
    out: list[float] = []
    for c in coords:
        out.extend(_flatten(c))
    return out
