"""A loopback STAC API with COGs served over HTTP range requests, for tests and benchmarks.

It speaks enough of STAC API 1.0 for pystac-client: the landing page (``conformsTo`` item-search),
``/conformance``, ``/collections``, ``/collections/{id}``, ``/search`` by POST and GET (``bbox``,
``intersects``, ``datetime``, ``collections``, ``ids``, ``limit``, ``query`` on ``eo:cloud_cover``,
paging through a ``next`` link with a token). Items are built from real raster files: their bbox
and geometry are the rasters' WGS84 footprints, and their assets point at ``/files/...`` on the same
server, which answers ``HEAD`` and ``GET`` with ``Range`` (206) like an object store.

Planetary-Computer-style signing is optional: with ``require_token=True`` a file request needs the
``st=...&sig=...`` query string that ``/api/sas/v1/token/{collection}`` hands out (an unsigned request
gets 403, as from an Azure blob).

Faults are injected per route from a script: ``server.inject("search", ["429", "503"])`` makes the next
two ``/search`` requests fail that way; ``"hang"`` sleeps ``hang_s`` before answering. Routes are
``landing``, ``search``, ``collections``, ``files``, ``token``. ``server.hits`` counts requests per
route, ``server.range_requests`` the ranged file reads.

Usage::

    with StacServer([Scene("s1", "sentinel-2-l2a", "2021-06-15T10:00:00Z", {"visual": path})]) as srv:
        Client.open(srv.url)...
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import rasterio
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping, shape

from tests.servers.base import LoopbackServer

CONFORMS = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#query",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
TOKEN = "st=2026-01-01T00%3A00%3A00Z&se=2099-01-01T00%3A00%3A00Z&sig=fixture"


@dataclass
class Scene:
    """One STAC item: real raster files as its assets (asset key → file)."""

    id: str
    collection: str
    datetime: str  # ISO 8601, e.g. "2021-06-15T10:00:00Z"
    assets: dict[str, Path]
    cloud_cover: float | None = None
    properties: dict[str, Any] = field(default_factory=dict)

    def footprint(self) -> dict[str, Any]:
        """WGS84 footprint (GeoJSON) of the first asset, densified by rasterio."""
        path = next(iter(self.assets.values()))
        with rasterio.open(path) as ds:
            geom = mapping(box(*ds.bounds))
            return transform_geom(ds.crs, "EPSG:4326", geom, antimeridian_cutting=True, precision=9)


def _parse_dt(text: str) -> datetime | None:
    if text in ("", ".."):
        return None
    t = text.strip().replace("Z", "+00:00")
    if len(t) == 10:
        t += "T00:00:00+00:00"
    dt = datetime.fromisoformat(t)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _dt_match(value: str, interval: str | None) -> bool:
    if not interval:
        return True
    when = _parse_dt(value)
    assert when is not None
    if "/" not in interval:
        exact = _parse_dt(interval)
        return exact is None or when == exact
    a, b = interval.split("/", 1)
    lo, hi = _parse_dt(a), _parse_dt(b)
    return (lo is None or when >= lo) and (hi is None or when <= hi)


_OPS = {
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "eq": lambda a, b: a == b,
}


class StacServer(LoopbackServer):
    """A threaded loopback STAC API; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        scenes: Iterable[Scene],
        *,
        require_token: bool = False,
        hang_s: float = 5.0,
        latency_s: float = 0.0,
        file_latency_s: float = 0.0,
    ) -> None:
        super().__init__()
        self.scenes = list(scenes)
        self.require_token = require_token
        self.hang_s = hang_s
        self.latency_s = latency_s
        self.file_latency_s = file_latency_s
        self.hits: Counter[str] = Counter()
        self.range_requests = 0
        self.search_bodies: list[dict[str, Any]] = []
        self._geoms = {s.id: s.footprint() for s in self.scenes}
        self._files: dict[str, Path] = {}
        for s in self.scenes:
            for key, path in s.assets.items():
                self._files[f"{s.collection}/{s.id}/{key}{Path(path).suffix}"] = Path(path)

    # -- faults ---------------------------------------------------------------------------------


    # -- documents ------------------------------------------------------------------------------
    def collection_ids(self) -> list[str]:
        return sorted({s.collection for s in self.scenes})

    def collection_doc(self, cid: str) -> dict[str, Any]:
        geoms = [shape(self._geoms[s.id]) for s in self.scenes if s.collection == cid]
        bounds = list(geoms[0].union(*geoms[1:]).bounds) if len(geoms) > 1 else list(geoms[0].bounds)
        times = sorted(s.datetime for s in self.scenes if s.collection == cid)
        return {
            "type": "Collection",
            "stac_version": "1.0.0",
            "id": cid,
            "description": f"fixture collection {cid}",
            "license": "proprietary",
            "extent": {"spatial": {"bbox": [bounds]}, "temporal": {"interval": [[times[0], times[-1]]]}},
            "links": [
                {"rel": "self", "href": f"{self.url}/collections/{cid}", "type": "application/json"},
                {"rel": "root", "href": f"{self.url}/", "type": "application/json"},
                {"rel": "items", "href": f"{self.url}/collections/{cid}/items", "type": "application/geo+json"},
            ],
        }

    def landing(self) -> dict[str, Any]:
        return {
            "type": "Catalog",
            "stac_version": "1.0.0",
            "id": "fixture-stac",
            "description": "loopback STAC API fixture",
            "conformsTo": CONFORMS,
            "links": [
                {"rel": "self", "href": f"{self.url}/", "type": "application/json"},
                {"rel": "root", "href": f"{self.url}/", "type": "application/json"},
                {"rel": "conformance", "href": f"{self.url}/conformance", "type": "application/json"},
                {"rel": "data", "href": f"{self.url}/collections", "type": "application/json"},
                {"rel": "search", "href": f"{self.url}/search", "type": "application/geo+json", "method": "GET"},
                {"rel": "search", "href": f"{self.url}/search", "type": "application/geo+json", "method": "POST"},
            ],
        }

    def item(self, s: Scene) -> dict[str, Any]:
        geom = self._geoms[s.id]
        props: dict[str, Any] = {"datetime": s.datetime, **s.properties}
        if s.cloud_cover is not None:
            props["eo:cloud_cover"] = s.cloud_cover
        assets = {
            key: {
                "href": f"{self.url}/files/{s.collection}/{s.id}/{key}{Path(path).suffix}",
                "type": COG_TYPE,
                "roles": ["data"],
            }
            for key, path in s.assets.items()
        }
        return {
            "type": "Feature",
            "stac_version": "1.0.0",
            "stac_extensions": [],
            "id": s.id,
            "collection": s.collection,
            "bbox": list(shape(geom).bounds),
            "geometry": geom,
            "properties": props,
            "assets": assets,
            "links": [{"rel": "collection", "href": f"{self.url}/collections/{s.collection}"}],
        }

    def search(self, params: dict[str, Any]) -> dict[str, Any]:
        self.search_bodies.append(params)
        region = None
        if params.get("intersects"):
            region = shape(params["intersects"])
        elif params.get("bbox"):
            b = params["bbox"]
            b = [float(v) for v in (b.split(",") if isinstance(b, str) else b)]
            region = box(b[0], b[1], b[2], b[3])
        cols = params.get("collections")
        if isinstance(cols, str):
            cols = cols.split(",")
        ids = params.get("ids")
        if isinstance(ids, str):
            ids = ids.split(",")
        query = params.get("query") or {}
        if isinstance(query, str):
            query = json.loads(query)
        hits = []
        for s in self.scenes:
            if cols and s.collection not in cols:
                continue
            if ids and s.id not in ids:
                continue
            if region is not None and not shape(self._geoms[s.id]).intersects(region):
                continue
            if not _dt_match(s.datetime, params.get("datetime")):
                continue
            item = self.item(s)
            if not all(
                prop in item["properties"] and _OPS[op](item["properties"][prop], val)
                for prop, conds in query.items()
                for op, val in conds.items()
            ):
                continue
            hits.append(item)
        limit = int(params.get("limit") or 10)
        start = int(params.get("token") or 0)
        page = hits[start : start + limit]
        links = []
        if start + limit < len(hits):
            body = {k: v for k, v in params.items() if k != "token"}
            body["token"] = str(start + limit)
            links.append({"rel": "next", "href": f"{self.url}/search", "method": "POST", "body": body,
                          "type": "application/geo+json"})
        return {"type": "FeatureCollection", "features": page, "links": links,
                "numberMatched": len(hits), "numberReturned": len(page)}


class _Handler(BaseHTTPRequestHandler):
    app: StacServer
    protocol_version = "HTTP/1.1"  # keep-alive, so clients can reuse connections

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, code: int, body: bytes, ctype: str = "application/json", headers: dict[str, str] | None = None,
              head: bool = False) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, code: int, doc: Any) -> None:
        self._send(code, json.dumps(doc).encode(), "application/geo+json" if "features" in doc else "application/json")

    def _fault(self, route: str) -> bool:
        """Serve an injected fault for ``route``; True when the request was answered with one."""
        fault = self.app.next_fault(route)
        if fault is None:
            return False
        if fault == "hang":
            time.sleep(self.app.hang_s)
            return False
        code = int(fault)
        msg = {"code": "TooManyRequests" if code == 429 else "ServiceUnavailable", "description": f"fault {code}"}
        self._send(code, json.dumps(msg).encode(), headers={"Retry-After": "0"} if code == 429 else None)
        return True

    def _route(self, path: str) -> str:
        if path.startswith("/files/"):
            return "files"
        if path.startswith("/api/sas/"):
            return "token"
        if path.startswith("/search"):
            return "search"
        if path.startswith("/collections"):
            return "collections"
        return "landing"

    def _body(self) -> dict[str, Any]:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        return json.loads(raw) if raw else {}

    def do_POST(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        route = self._route(parts.path)
        body = self._body()
        self.app.hits[route] += 1
        if self._fault(route):
            return
        if route != "search":
            self._json(405, {"code": "MethodNotAllowed", "description": parts.path})
            return
        time.sleep(self.app.latency_s)
        self._json(200, self.app.search(body))

    def do_HEAD(self) -> None:
        self._get(head=True)

    def do_GET(self) -> None:
        self._get(head=False)

    def _get(self, head: bool) -> None:
        parts = urllib.parse.urlsplit(self.path)
        route = self._route(parts.path)
        self.app.hits[route] += 1
        if self._fault(route):
            return
        query = dict(urllib.parse.parse_qsl(parts.query))
        path = parts.path.rstrip("/") or "/"
        if route == "files":
            self._file(parts.path[len("/files/"):], parts.query, head)
            return
        time.sleep(self.app.latency_s)
        if route == "token":
            cid = path.rsplit("/", 1)[-1]
            self._json(200, {"token": TOKEN, "msft:expiry": "2099-01-01T00:00:00Z", "collection": cid})
        elif path == "/":
            self._json(200, self.app.landing())
        elif path == "/conformance":
            self._json(200, {"conformsTo": CONFORMS})
        elif path == "/collections":
            docs = [self.app.collection_doc(c) for c in self.app.collection_ids()]
            self._json(200, {"collections": docs, "links": []})
        elif route == "collections":
            m = re.match(r"^/collections/([^/]+)$", path)
            if m and m.group(1) in self.app.collection_ids():
                self._json(200, self.app.collection_doc(m.group(1)))
            else:
                self._json(404, {"code": "NotFound", "description": f"no collection at {path}"})
        elif route == "search":
            params: dict[str, Any] = dict(query)
            if "intersects" in params:
                params["intersects"] = json.loads(params["intersects"])
            self._json(200, self.app.search(params))
        else:
            self._json(404, {"code": "NotFound", "description": path})

    def _file(self, rel: str, query: str, head: bool) -> None:
        path = self.app._files.get(urllib.parse.unquote(rel))
        if path is None:
            self._send(404, b"<Error><Code>BlobNotFound</Code></Error>", "application/xml", head=head)
            return
        if self.app.require_token and "sig=" not in query:
            self._send(403, b"<Error><Code>AuthenticationFailed</Code></Error>", "application/xml", head=head)
            return
        time.sleep(self.app.file_latency_s)
        data = path.read_bytes()
        size = len(data)
        rng = self.headers.get("Range")
        common = {"Accept-Ranges": "bytes", "ETag": f'"{size}-{int(path.stat().st_mtime)}"'}
        if rng:
            m = re.match(r"bytes=(\d*)-(\d*)$", rng.strip())
            if not m:
                self._send(416, b"", "application/octet-stream", {"Content-Range": f"bytes */{size}"}, head)
                return
            a, b = m.group(1), m.group(2)
            if a == "":
                start, end = max(0, size - int(b)), size - 1
            else:
                start, end = int(a), min(size - 1, int(b) if b else size - 1)
            if start >= size:
                self._send(416, b"", "application/octet-stream", {"Content-Range": f"bytes */{size}"}, head)
                return
            self.app.range_requests += 1
            headers = {**common, "Content-Range": f"bytes {start}-{end}/{size}"}
            self._send(206, data[start : end + 1], "image/tiff", headers, head)
            return
        self._send(200, data, "image/tiff", common, head)


def write_cog(path: Path, src_path: Path, *, window: tuple[int, int, int, int] | None = None) -> Path:
    """Copy a raster (or a window of it) to a real COG at ``path`` (tiled, with overviews)."""
    from rasterio.shutil import copy as rio_copy
    from rasterio.windows import Window

    if window is None:
        rio_copy(src_path, path, driver="COG", BLOCKSIZE=256, OVERVIEWS="AUTO")
        return path
    col, row, w, h = window
    with rasterio.open(src_path) as src:
        win = Window(col, row, w, h)
        profile = src.profile | {"driver": "GTiff", "width": w, "height": h,
                                 "transform": src.window_transform(win), "tiled": True,
                                 "blockxsize": 256, "blockysize": 256}
        tmp = path.with_suffix(".tmp.tif")
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(src.read(window=win))
            dst.colorinterp = src.colorinterp
    rio_copy(tmp, path, driver="COG", BLOCKSIZE=256, OVERVIEWS="AUTO")
    tmp.unlink()
    return path


StacServer.handler = _Handler
