"""``GeeSource``: Earth Engine imagery through ``computePixels`` (``--imagery gee:PROJECT``).

Per chip, at most two requests: one metadata request (``value:compute`` of the filtered,
sorted collection's ids, times and cloud cover; answered from ``$SKYSCRIPT_CACHE/gee`` when the
same search was made before), then one ``image:computePixels`` of the mosaic of the picked
images (best on top), band-selected, on the chip's own grid (CRS, affine transform, size): no
server-side reprojection guesswork, no thumbnails. Masked pixels come back as ``NODATA`` and
count as empty.

Credentials, first found: ``SKYSCRIPT_EE_TOKEN`` (an OAuth access token), then
``GOOGLE_APPLICATION_CREDENTIALS`` (a service-account key file), then what ``earthengine
authenticate`` stored. Endpoint: ``imagery.gee.url``, else ``SKYSCRIPT_EE_URL``, else the
high-volume endpoint. None of these reach logs or run.json (``describe`` names only the kind).

Requests in flight are limited machine-wide by :class:`pipeline.imagery.slots.RequestSlots`
(``imagery.gee.max_concurrent``). 429, 5xx and timeouts are retried with backoff
(:mod:`pipeline.retry`); answers that cannot succeed ("User memory limit exceeded", bad request,
asset not found) raise :class:`ImageryError` at once, which the build records as a failed row.
Earth Engine's client keeps global state, so it is initialised once per process, lazily after
unpickling in a Dask worker.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import requests
from shapely.geometry.base import BaseGeometry

from pipeline.cache import cache_dir
from pipeline.config import ImageryConfig
from pipeline.errors import BadInputError, ImageryError
from pipeline.imagery.catalog import CatalogEntry
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
from pipeline.imagery.slots import RequestSlots
from pipeline.records import Chip, ChipRequest
from pipeline.retry import Retryable, RetryPolicy, retry_call
from pipeline.seams import Coverage

T = TypeVar("T")
HIGH_VOLUME_URL = "https://earthengine-highvolume.googleapis.com"
NODATA = -1.0e30  # what masked pixels are unmasked to; never a real band value
MAX_SCENES = 20  # metadata rows per search
MOSAIC_SCENES = 4  # images stacked per chip (best on top), enough to fill scene edges
_PERMANENT = ("memory limit", "not found", "does not have access", "invalid", "unknown algorithm",
              "did not match any bands", "permission", "unauthenticated", "credentials")
_INIT_LOCK = threading.Lock()
_INITIALISED: dict[str, Any] = {}


def resolve_credentials(env: dict[str, str] | None = None) -> tuple[Any, str]:
    """(credentials, kind) from the environment, first found; a one-line error when none is usable."""
    env = dict(os.environ) if env is None else env
    token = env.get("SKYSCRIPT_EE_TOKEN", "").strip()
    if token:
        from google.oauth2.credentials import Credentials

        return Credentials(token=token), "SKYSCRIPT_EE_TOKEN"
    key = env.get("GOOGLE_APPLICATION_CREDENTIALS", "").strip()
    if key:
        if not os.path.isfile(key):
            raise BadInputError(
                f"GOOGLE_APPLICATION_CREDENTIALS names {key!r}, which is not a file; point it at a "
                "service-account key (JSON) or unset it"
            )
        from google.oauth2 import service_account

        try:
            creds = service_account.Credentials.from_service_account_file(
                key, scopes=["https://www.googleapis.com/auth/earthengine",
                             "https://www.googleapis.com/auth/cloud-platform"])
        except (ValueError, KeyError) as exc:
            raise BadInputError(f"GOOGLE_APPLICATION_CREDENTIALS {key!r} is not a service-account key: {exc}") from exc
        return creds, "GOOGLE_APPLICATION_CREDENTIALS"
    import ee

    try:
        return ee.data.get_persistent_credentials(), "earthengine authenticate"
    except Exception as exc:  # ee raises EEException (or google.auth errors) with a long story
        raise BadInputError(
            "no Earth Engine credentials: set SKYSCRIPT_EE_TOKEN (an OAuth access token), "
            "GOOGLE_APPLICATION_CREDENTIALS (a service-account key file) or run `earthengine authenticate`"
        ) from exc


class _StatusHttp:
    """httplib2-style transport over one requests session that remembers each thread's last status.

    Earth Engine's errors carry only a message; the status tells retryable (429, 5xx) from not.
    """

    def __init__(self, timeout_s: float) -> None:
        self.session = requests.Session()
        self.session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=64))
        self.session.mount("https://", requests.adapters.HTTPAdapter(pool_maxsize=64))
        self.timeout_s = timeout_s
        self.local = threading.local()

    def request(self, uri: str, method: str = "GET", body: Any = None, headers: Any = None,
                redirections: Any = None, connection_type: Any = None) -> tuple[Any, bytes]:
        import httplib2

        self.local.status = None
        try:
            resp = self.session.request(method, uri, data=body, headers=headers, timeout=self.timeout_s)
        except requests.exceptions.Timeout as exc:
            self.local.status = 408
            raise TimeoutError(str(exc)) from exc
        except requests.exceptions.ConnectionError as exc:
            self.local.status = 503
            raise ConnectionError(str(exc)) from exc
        self.local.status = resp.status_code
        head = dict(resp.headers)
        head["status"] = str(resp.status_code)
        return httplib2.Response(head), resp.content


def _endpoint(cfg: ImageryConfig) -> str:
    return (cfg.gee.url or os.environ.get("SKYSCRIPT_EE_URL") or HIGH_VOLUME_URL).rstrip("/")


class GeeSource:
    """Implements :class:`pipeline.seams.ImagerySource` over Earth Engine."""

    name = "gee"

    def __init__(
        self,
        project: str,
        entries: Sequence[CatalogEntry],
        cfg: ImageryConfig | None = None,
        *,
        policy: RetryPolicy | None = None,
        timeout_s: float = 120.0,
        lazy: bool = False,
        use_cache: bool = True,
    ) -> None:
        if not project or "/" in project:
            raise BadInputError(f"--imagery gee:{project!r}: pass a Google Cloud project id, e.g. gee:my-project")
        self.project = project
        self.cfg = cfg or ImageryConfig()
        self.entries = {e.id: e for e in entries if e.source == "gee"}
        self.url = _endpoint(self.cfg)
        self.policy = policy or RetryPolicy(attempts=5, base_delay=1.0, max_delay=30.0)
        self.timeout_s = timeout_s
        self.use_cache = use_cache
        self.credential_kind = ""
        if not lazy:
            self._ensure()  # bad credentials or endpoint: a one-line error at start-up

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    # -- set-up ------------------------------------------------------------------------------
    def _ensure(self) -> _StatusHttp:
        """Initialise the ee client for this endpoint/project in this process (once)."""
        import ee

        secret = os.environ.get("SKYSCRIPT_EE_TOKEN", "") + os.environ.get("GOOGLE_APPLICATION_CREDENTIALS", "")
        key = f"{self.url}|{self.project}|{os.getpid()}|{hashlib.sha256(secret.encode()).hexdigest()}"
        with _INIT_LOCK:
            if _INITIALISED.get("key") == key:
                return _INITIALISED["http"]  # type: ignore[no-any-return]
            creds, self.credential_kind = resolve_credentials()
            http = _StatusHttp(self.timeout_s)
            try:
                ee.Initialize(credentials=creds, url=self.url, project=self.project, http_transport=http)
                ee.data.setMaxRetries(0)  # retries are ours: bounded, with backoff, status-aware
                # One tiny request proves the endpoint and credentials now, not mid-build (ee skips
                # fetching the algorithm list when an earlier Initialize in this process did it).
                ee.data.computeValue(ee.Number(1))
            except Exception as exc:
                # ee now holds the failed settings: forget the last good ones so the next start re-initialises.
                _INITIALISED.clear()
                raise BadInputError(f"cannot start Earth Engine at {self.url} for project {self.project!r} "
                                    f"with {self.credential_kind} credentials: {_short(exc)}") from exc
            _INITIALISED.update(key=key, http=http)
            return http

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one Earth Engine request under a machine-wide slot, retrying transient failures."""
        import ee

        http = self._ensure()
        slots = RequestSlots(cache_dir("gee", "slots"), self.url, self.cfg.gee.max_concurrent)

        def attempt(_n: int) -> T:
            with slots.hold():
                try:
                    return fn()
                except (ee.EEException, OSError) as exc:
                    status = getattr(http.local, "status", None)
                    msg = _short(exc)
                    if status in (401, 403) or "credential" in msg.lower():
                        raise ImageryError(f"gee: {what}: credentials rejected ({msg}); renew "
                                           "SKYSCRIPT_EE_TOKEN or re-run `earthengine authenticate`") from exc
                    if (status in (408, 429) or (status or 0) >= 500 or isinstance(exc, OSError)) and not any(
                            p in msg.lower() for p in _PERMANENT):
                        raise Retryable(f"{what}: {msg}") from exc
                    raise ImageryError(f"gee: {what}: {msg}") from exc
                except Exception as exc:  # google.auth RefreshError on an expired token, and the like
                    if "refresh" in type(exc).__name__.lower() or "auth" in type(exc).__module__:
                        raise ImageryError(f"gee: {what}: credentials expired or invalid ({_short(exc)}); renew "
                                           "SKYSCRIPT_EE_TOKEN or re-run `earthengine authenticate`") from exc
                    raise

        try:
            return retry_call(attempt, self.policy)
        except Retryable as exc:
            raise ImageryError(f"gee: {exc} (gave up after {self.policy.attempts} attempts)") from exc

    # -- ImagerySource -------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "project": self.project, "url": self.url, "credentials": self.credential_kind,
                "max_concurrent": self.cfg.gee.max_concurrent, "collections": sorted(self.entries)}

    def coverage(self, geometry: BaseGeometry) -> list[Coverage]:
        hits = sorted((e for e in self.entries.values() if e.coverage.covers(geometry)), key=lambda e: e.gsd)
        return [Coverage(e.id, "", e.gsd, "", None) for e in hits]

    def read(self, request: ChipRequest) -> Chip:
        entry = self.entries.get(request.collection)
        if entry is None:
            raise ImageryError(f"collection {request.collection!r} is not an Earth Engine catalog entry")
        scenes = self.scenes(entry, request.bbox, request.date)
        if not scenes:
            raise imagery_error(NO_IMAGERY,
                f"no_imagery: no {entry.id} image covers {request.key!r} within dates {list(entry.dates)}"
                + (f" and {entry.cloud_property} <= {entry.max_cloud:g}" if entry.max_cloud is not None else ""))
        used = scenes[:MOSAIC_SCENES] if entry.type == "ImageCollection" else scenes[:1]
        data = self.pixels(entry, [s.id for s in used], request)
        frac = check_empty(data, self.cfg.max_nodata_frac, request.key, f"{entry.id} via Earth Engine")
        provenance = {
            "gee_url": self.url,
            "image_ids": [s.id for s in used],  # mosaic order: the first is on top
            "acquired": [s.datetime for s in used],
            "cloud_cover": [s.cloud for s in used],
            "bands": list(entry.bands),
            "range": list(entry.range),
            "resampling": "nearest (Earth Engine default)",
            "empty_fraction": frac,
        }
        return Chip(request=request, pixels=linear_uint8(data, entry.range), source=self.name,
                    collection=entry.id, image_id=",".join(s.id for s in used),
                    acquired=(used[0].datetime or "")[:10] or None, native_gsd=entry.gsd, provenance=provenance)

    # -- requests ------------------------------------------------------------------------------
    def _search_expr(self, entry: CatalogEntry, bbox: tuple[float, float, float, float], date: str | None) -> Any:
        import ee

        if entry.type == "Image":
            img = ee.Image(entry.id)
            return ee.Dictionary({"ids": ee.List([img.get("system:id")]),
                                  "times": ee.List([img.get("system:time_start")])})
        col = ee.ImageCollection(entry.id).filterBounds(ee.Geometry.Rectangle(list(bbox), None, False))
        pick = effective_pick(entry.pick, date)
        start, end = date_window(*entry.dates, date) if pick == "closest-to-date" else entry.dates
        if start or end:
            stop = (_dt.date.fromisoformat(end) + _dt.timedelta(days=1)).isoformat() if end else "2200-01-01"
            col = col.filterDate(start or "1970-01-01", stop)
        if entry.max_cloud is not None and entry.cloud_property:
            col = col.filter(ee.Filter.lte(entry.cloud_property, entry.max_cloud))
        if pick == "least-cloudy" and entry.cloud_property:
            col = col.sort(entry.cloud_property)
        else:
            col = col.sort("system:time_start", False)
        col = col.limit(MAX_SCENES)
        out = {"ids": col.aggregate_array("system:id"), "times": col.aggregate_array("system:time_start")}
        if entry.cloud_property:
            out["clouds"] = col.aggregate_array(entry.cloud_property)
        return ee.Dictionary(out)

    def scenes(self, entry: CatalogEntry, bbox: tuple[float, float, float, float], date: str | None) -> list[Scene]:
        """Images of ``entry`` over ``bbox``, best first (one metadata request, cached)."""
        import ee

        rounded = [round(float(v), 6) for v in bbox]
        blob = json.dumps([self.url, self.project, entry.describe(), rounded, date], sort_keys=True, default=str)
        path = cache_dir("gee", "meta") / f"{hashlib.sha256(blob.encode()).hexdigest()[:24]}.json"
        meta = None
        if self.use_cache and path.is_file():
            try:
                meta = json.loads(path.read_text())
            except ValueError:
                meta = None
        if meta is None:
            expr = self._search_expr(entry, tuple(rounded), date)  # type: ignore[arg-type]
            meta = self._call(f"metadata of {entry.id}", lambda: ee.data.computeValue(expr))
            if self.use_cache:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
                tmp.write_text(json.dumps(meta))
                os.replace(tmp, path)
        ids, times = meta.get("ids") or [], meta.get("times") or []
        clouds = meta.get("clouds") or [None] * len(ids)
        scenes = [Scene(str(i), _iso(t), None if c is None else float(c))
                  for i, t, c in zip(ids, times, clouds, strict=False) if i]
        return order_scenes(scenes, effective_pick(entry.pick, date), date)

    def pixels(self, entry: CatalogEntry, image_ids: Sequence[str], request: ChipRequest) -> np.ndarray:
        """(3, H, W) float32 on the request grid, NaN where no image has data."""
        import ee

        if entry.type == "Image":
            img = ee.Image(entry.id)
        else:  # mosaic() puts the last image on top: best last
            img = ee.ImageCollection.fromImages([ee.Image(i) for i in reversed(image_ids)]).mosaic()
        img = img.select(list(entry.bands)).toFloat().unmask(NODATA, False)
        a, b, c, d, e, f = request.transform
        params = {
            "expression": img,
            "fileFormat": "NUMPY_NDARRAY",
            "grid": {
                "dimensions": {"width": request.width, "height": request.height},
                "affineTransform": {"scaleX": a, "shearX": b, "translateX": c, "shearY": d, "scaleY": e,
                                    "translateY": f},
                "crsCode": request.crs,
            },
        }
        arr = self._call(f"pixels of {request.key} from {entry.id}", lambda: ee.data.computePixels(params))
        names = arr.dtype.names or ()
        if len(names) != 3:
            raise ImageryError(f"gee: pixels of {request.key}: expected bands {entry.bands}, got {list(names)}")
        data = np.stack([np.asarray(arr[n], dtype=np.float32) for n in names])
        if data.shape[1:] != (request.height, request.width):
            raise ImageryError(f"gee: pixels of {request.key}: got {data.shape[1:]} for a "
                               f"{request.height}x{request.width} grid")
        data[data <= NODATA / 10] = np.nan
        return data


def _iso(ms: Any) -> str | None:
    if ms is None:
        return None
    return _dt.datetime.fromtimestamp(float(ms) / 1000.0, tz=_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]
