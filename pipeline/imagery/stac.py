"""``StacSource``: keyless imagery from a STAC API of COGs (``--imagery stac:URL``).

For each chip: one item search (bbox of the tile, the collection's dates, its cloud filter),
answered from the cache under ``$SKYSCRIPT_CACHE/stac`` when the same search was made before;
items ordered by the collection's ``pick``; then windowed reads of the band assets over HTTP,
each reprojected onto the chip's grid (:mod:`pipeline.imagery.warp`), the first item's valid
pixels first and gaps filled from the next items (a mosaic when the chip spans scenes).

One ``requests`` session (pystac-client's, with retries on 429/5xx for POST too) serves the API
and the Planetary Computer token endpoint; GDAL's reads get their retry settings through
``rasterio.Env``. Band ``key`` reads band 1 of asset ``key``; ``key:N`` reads band N.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from shapely.geometry.base import BaseGeometry

from pipeline.cache import cache_dir
from pipeline.errors import BadInputError, ImageryError
from pipeline.imagery.catalog import PC_SIGN_URL, CatalogEntry
from pipeline.imagery.http import HttpPolicy, gdal_env, make_retry
from pipeline.imagery.remote import (
    NO_IMAGERY,
    Scene,
    check_empty,
    date_window,
    effective_pick,
    imagery_error,
    linear_uint8,
    order_scenes,
)
from pipeline.records import Chip, ChipRequest
from pipeline.seams import Coverage

MAX_ITEMS = 50


def normalise_url(url: str) -> str:
    text = url.strip().rstrip("/")
    if not text.startswith(("http://", "https://")):
        raise BadInputError(f"--imagery stac:{url!r}: use stac:https://host/path (the STAC API root)")
    return text


def _band(spec: str) -> tuple[str, int]:
    key, _, num = spec.partition(":")
    return key, int(num) if num else 1


class StacSource:
    """Implements :class:`pipeline.seams.ImagerySource` over one STAC API."""

    name = "stac"

    def __init__(
        self,
        url: str,
        entries: Sequence[CatalogEntry],
        *,
        max_nodata_frac: float = 0.05,
        policy: HttpPolicy | None = None,
        resampling: str = "bilinear",
        use_cache: bool = True,
    ) -> None:
        self.url = normalise_url(url)
        self.entries = {e.id: e for e in entries if e.source == "stac"}
        self.max_nodata_frac = max_nodata_frac
        self.policy = policy or HttpPolicy()
        self.resampling = resampling
        self.use_cache = use_cache
        self._local = threading.local()
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for k in ("_local", "_lock"):
            state.pop(k, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()
        self._lock = threading.Lock()

    # -- ImagerySource -----------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "collections": sorted(self.entries)}

    def coverage(self, geometry: BaseGeometry) -> list[Coverage]:
        """Catalog collections whose coverage holds ``geometry``, finest first (no request made)."""
        hits = [e for e in self.entries.values() if e.coverage.covers(geometry)]
        hits.sort(key=lambda e: e.gsd)
        return [Coverage(e.id, "", e.gsd, "", None) for e in hits]

    def read(self, request: ChipRequest) -> Chip:
        entry = self.entries.get(request.collection)
        if entry is None:
            raise ImageryError(f"collection {request.collection!r} is not served by stac:{self.url}")
        scenes, items = self.search(entry, request.bbox, request.date)
        if not scenes:
            raise imagery_error(NO_IMAGERY,
                f"no_imagery: no {entry.id} item covers {request.key!r} within dates {list(entry.dates)}"
                + (f" and {entry.cloud_property} <= {entry.max_cloud:g}" if entry.max_cloud is not None else "")
            )
        data = np.full((3, request.height, request.width), np.nan, dtype=np.float32)
        used: list[Scene] = []
        for scene in scenes:
            if np.isfinite(data).all():
                break
            layer = self._read_item(entry, items[scene.id], request)
            fill = ~np.isfinite(data).all(axis=0) & np.isfinite(layer).all(axis=0)
            if fill.any():
                data[:, fill] = layer[:, fill]
                used.append(scene)
        frac = check_empty(data, self.max_nodata_frac, request.key, f"{entry.id} via {self.url}")
        pixels = linear_uint8(data, entry.range)
        provenance = {
            "stac_url": self.url,
            "stac_collection": entry.remote_id,
            "image_ids": [s.id for s in used],
            "acquired": [s.datetime for s in used],
            "cloud_cover": [s.cloud for s in used],
            "bands": list(entry.bands),
            "range": list(entry.range),
            "resampling": self.resampling,
            "empty_fraction": frac,
            "assets": {s.id: {b: items[s.id]["assets"][_band(b)[0]]["href"] for b in entry.bands} for s in used},
        }
        return Chip(
            request=request, pixels=pixels, source=self.name, collection=entry.id,
            image_id=",".join(s.id for s in used), acquired=((used[0].datetime or "")[:10] or None) if used else None,
            native_gsd=entry.gsd, provenance=provenance,
        )

    # -- search ---------------------------------------------------------------------------------
    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            from pystac_client import Client
            from pystac_client.stac_api_io import StacApiIO

            timeout = (self.policy.connect_timeout_s, self.policy.read_timeout_s)
            io = StacApiIO(max_retries=make_retry(self.policy), timeout=timeout)
            try:
                client = Client.open(self.url, stac_io=io, timeout=timeout)
            except Exception as exc:  # pystac-client raises APIError, requests errors, JSON errors
                raise ImageryError(f"cannot open STAC API {self.url}: {exc}") from exc
            self._local.client = client
        return client

    def _params(
        self, entry: CatalogEntry, bbox: tuple[float, float, float, float], date: str | None = None
    ) -> dict[str, Any]:
        start, end = date_window(*entry.dates, date)
        params: dict[str, Any] = {
            "collections": [entry.remote_id],
            "bbox": [round(float(v), 7) for v in bbox],
            "datetime": f"{start or '..'}/{end or '..'}" if (start or end) else None,
            "max_items": MAX_ITEMS,
            "limit": MAX_ITEMS,
        }
        if entry.max_cloud is not None and entry.cloud_property:
            params["query"] = {entry.cloud_property: {"lte": entry.max_cloud}}
        return params

    def search(
        self, entry: CatalogEntry, bbox: tuple[float, float, float, float], date: str | None = None
    ) -> tuple[list[Scene], dict[str, dict[str, Any]]]:
        """Items of ``entry`` intersecting ``bbox``, best first by its pick; cached by request."""
        params = self._params(entry, bbox, date)
        blob = json.dumps([self.url, params], sort_keys=True).encode()
        path = cache_dir("stac") / f"{hashlib.sha256(blob).hexdigest()[:24]}.json"
        features = None
        if self.use_cache and path.is_file():
            try:
                features = json.loads(path.read_text())
            except ValueError:
                features = None  # a torn file from a killed run: search again
        if features is None:
            try:
                found = self._client().search(**{k: v for k, v in params.items() if v is not None})
                features = [it.to_dict() for it in found.items()]
            except ImageryError:
                raise
            except Exception as exc:
                raise ImageryError(f"STAC search of {entry.remote_id} at {self.url} failed: {exc}") from exc
            if self.use_cache:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
                tmp.write_text(json.dumps(features))
                os.replace(tmp, path)
        items = {f["id"]: f for f in features}
        cloud = entry.cloud_property or "eo:cloud_cover"  # recorded when the items carry it
        scenes = [Scene(f["id"], f["properties"].get("datetime"), f["properties"].get(cloud)) for f in features]
        return order_scenes(scenes, effective_pick(entry.pick, date), date), items

    # -- pixels ---------------------------------------------------------------------------------
    def _sign(self, entry: CatalogEntry, href: str) -> str:
        if entry.sign != "planetary-computer":
            return href
        base = (entry.sign_url or PC_SIGN_URL).rstrip("/")
        with self._lock:
            token, expires = self._tokens.get(entry.remote_id, ("", 0.0))
        if time.time() > expires - 60:
            session = self._client()._stac_io.session  # the one HTTP session, retries included
            try:
                resp = session.get(f"{base}/token/{entry.remote_id}", timeout=self.policy.read_timeout_s)
                resp.raise_for_status()
                token = resp.json()["token"]
            except Exception as exc:
                raise ImageryError(f"cannot get a signing token for {entry.id} from {base}: {exc}") from exc
            with self._lock:
                self._tokens[entry.remote_id] = (token, time.time() + 45 * 60)
        return f"{href}{'&' if '?' in href else '?'}{token}"

    def _read_item(self, entry: CatalogEntry, item: dict[str, Any], request: ChipRequest) -> np.ndarray:
        import rasterio
        from rasterio.enums import Resampling
        from rasterio.errors import RasterioError

        from pipeline.imagery.warp import warp_to_grid

        resampling = {"nearest": Resampling.nearest, "bilinear": Resampling.bilinear,
                      "cubic": Resampling.cubic}[self.resampling]
        by_asset: dict[str, list[int]] = {}  # one open per asset, all its bands in one read
        for spec in entry.bands:
            key, num = _band(spec)
            by_asset.setdefault(key, []).append(num)
        layers: dict[tuple[str, int], np.ndarray] = {}
        with rasterio.Env(**gdal_env(self.policy)):
            for key, nums in by_asset.items():
                asset = item["assets"].get(key)
                if asset is None:
                    raise ImageryError(f"{entry.id} item {item['id']!r} has no asset {key!r} (bands {entry.bands})")
                href = self._sign(entry, asset["href"])
                uniq = sorted(set(nums))
                try:
                    with rasterio.open(href) as ds:
                        warped, _win = warp_to_grid(ds, uniq, request, resampling)
                except RasterioError as exc:
                    raise ImageryError(f"reading {asset['href']} for {request.key!r} failed: {exc}") from exc
                for i, num in enumerate(uniq):
                    layers[(key, num)] = warped[i]
        out = [layers[_band(spec)] for spec in entry.bands]
        return np.stack(out)

