"""``stac:URL``: a STAC API searched with pystac-client; one COG asset per band, read over HTTP.

pystac-client's default retry skips 429 and POST (its searches are POSTs), so the session
gets a ``urllib3.Retry`` that retries those too, with backoff. Pixel reads go through
:mod:`pipeline.satclip.reading` (GDAL's own bounded HTTP retries).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from urllib3.util.retry import Retry

from pipeline.errors import BadInputError, ImageryError
from pipeline.satclip.reading import gdal_env, read_window
from pipeline.satclip.scenes import GSD, S2_BANDS, Scene, SceneFilter

# Asset keys per band: Planetary Computer / CDSE names first, then Earth Search v1 names.
ASSET_KEYS: dict[str, tuple[str, ...]] = {
    "B01": ("B01", "coastal"),
    "B02": ("B02", "blue"),
    "B03": ("B03", "green"),
    "B04": ("B04", "red"),
    "B05": ("B05", "rededge1"),
    "B06": ("B06", "rededge2"),
    "B07": ("B07", "rededge3"),
    "B08": ("B08", "nir"),
    "B8A": ("B8A", "nir08"),
    "B09": ("B09", "nir09"),
    "B11": ("B11", "swir16"),
    "B12": ("B12", "swir22"),
}
RETRY_STATUS = (429, 500, 502, 503, 504)


def retry_policy(total: int = 5, backoff: float = 0.5) -> Retry:
    """Retries for every method (POST searches included) on 429 and 5xx, honouring Retry-After."""
    return Retry(
        total=total,
        backoff_factor=backoff,
        status_forcelist=RETRY_STATUS,
        allowed_methods=None,
        respect_retry_after_header=True,
        raise_on_status=False,
    )


class StacScenes:
    name = "stac"

    def __init__(
        self,
        url: str,
        collection: str = "sentinel-2-l2a",
        max_items: int = 50,
        max_scenes: int = 10_000,
        retries: int = 5,
        backoff: float = 0.5,
    ) -> None:
        from pystac_client import Client
        from pystac_client.stac_api_io import StacApiIO

        if not url.startswith(("http://", "https://")):
            raise BadInputError(f"stac:URL needs an http(s) URL, got {url!r}")
        self.url, self.collection = url, collection
        self.max_items, self.max_scenes = max_items, max_scenes
        try:
            self.client = Client.open(url, stac_io=StacApiIO(max_retries=retry_policy(retries, backoff)))
        except Exception as exc:  # pystac-client raises APIError, requests errors, JSON errors
            raise ImageryError(f"cannot open the STAC API at {url}: {exc}") from exc

    def describe(self) -> dict[str, object]:
        return {"kind": "stac", "url": self.url, "collection": self.collection}

    def _search(self, flt: SceneFilter, limit: int, **where: Any) -> list[Scene]:
        try:
            from pystac_client import ConformanceClasses

            # The cloud filter goes to the server only where it declares the query extension;
            # it is applied again client-side either way (SceneFilter.keeps).
            if self.client.conforms_to(ConformanceClasses.QUERY):
                where = {**where, "query": {"eo:cloud_cover": {"lt": flt.max_cloud}}}
            search = self.client.search(
                collections=[self.collection],
                datetime=flt.datetime_range(),
                max_items=limit,
                **where,
            )
            items = list(search.items_as_dicts())
        except Exception as exc:
            raise ImageryError(f"STAC search at {self.url} failed: {exc}") from exc
        scenes = [s for s in (self._scene(it) for it in items) if s is not None and flt.keeps(s)]
        return sorted(scenes, key=lambda s: s.scene_id)

    def scenes_at(self, lon: float, lat: float, flt: SceneFilter) -> list[Scene]:
        return self._search(flt, self.max_items, intersects={"type": "Point", "coordinates": [lon, lat]})

    def all_scenes(self, flt: SceneFilter, region: tuple[float, float, float, float] | None) -> list[Scene]:
        return self._search(flt, self.max_scenes, bbox=list(region or (-180.0, -90.0, 180.0, 90.0)))

    def read(self, scene: Scene, col_off: int, row_off: int, size: int) -> tuple[np.ndarray, float | None]:
        return read_window(scene, col_off, row_off, size)

    def _scene(self, item: dict[str, Any]) -> Scene | None:
        """A Scene from an item dict; None when the item lacks a band (reported by count)."""
        assets, props = item.get("assets", {}), item.get("properties", {})
        hrefs = []
        for band in S2_BANDS:
            key = next((k for k in ASSET_KEYS[band] if k in assets), None)
            if key is None:
                return None
            hrefs.append(assets[key]["href"])
        ref = assets[next(k for k in ASSET_KEYS["B02"] if k in assets)]
        crs, transform, shape = _grid(props, ref)
        if transform is None or shape is None:
            try:
                crs, transform, shape = _grid_from_file(ref["href"])
            except Exception:  # the asset vanished or is unreadable: the item is unusable
                return None
        bbox = item.get("bbox") or [-180, -90, 180, 90]
        cloud = props.get("eo:cloud_cover")
        return Scene(
            scene_id=str(item["id"]),
            source=f"stac:{self.url}",
            crs=crs,
            transform=transform,
            width=shape[1],
            height=shape[0],
            footprint=(float(bbox[0]), float(bbox[1]), float(bbox[2]), float(bbox[3])),
            hrefs=tuple(hrefs),
            datetime=str(props.get("datetime") or props.get("start_datetime") or ""),
            cloud_cover=float(cloud) if cloud is not None else None,
            mgrs_tile=str(props.get("s2:mgrs_tile") or props.get("mgrs:tile") or ""),
            platform=str(props.get("platform") or ""),
        )


def _grid(props: dict[str, Any], asset: dict[str, Any]) -> tuple[str, Any, Any]:
    """CRS, 10 m affine and (rows, cols) from the projection extension, when present."""
    epsg = asset.get("proj:epsg") or props.get("proj:epsg")
    code = asset.get("proj:code") or props.get("proj:code") or (f"EPSG:{epsg}" if epsg else "")
    t = asset.get("proj:transform")
    shape = asset.get("proj:shape")
    if not code or not t or not shape or abs(float(t[0]) - GSD) > 1e-6:
        return code, None, None
    return code, tuple(float(v) for v in t[:6]), (int(shape[0]), int(shape[1]))


def _grid_from_file(href: str) -> tuple[str, tuple[float, ...], tuple[int, int]]:
    import rasterio

    with gdal_env(), rasterio.open(href) as ds:
        return ds.crs.to_string(), tuple(ds.transform)[:6], (ds.height, ds.width)
