"""A loopback Earth Engine REST server answering from real rasters, for tests and benchmarks.

It speaks the Cloud API the way earthengine-api calls it: ``GET /$discovery/rest`` returns the
discovery document shipped in the ee wheel (``ee/tests/cloud_api_discovery_document.json``, with
its root URL pointed here), ``GET /v1/projects/{p}/algorithms`` the algorithm list shipped beside
it, ``POST .../value:compute`` and ``POST .../image:computePixels`` evaluate the request's
expression graph (the real serialized form: ``values`` of ``functionInvocationValue``,
``constantValue``, ``arrayValue``, ``dictionaryValue``, ``valueReference``).

The interpreter knows the functions a chip source needs, and answers anything else with a 400
naming the function, as Earth Engine would: ``ImageCollection.load``, ``Image.load``,
``Collection.filter``, ``Filter.intersects``, ``Filter.dateRangeContains``, ``Filter.and``,
``Filter.lessThanOrEquals``/``greaterThanOrEquals``, ``Collection.limit`` (sort + limit),
``AggregateFeatureCollection.array``, ``Element.get``, ``DateRange``, ``Date``,
``GeometryConstructors.*``, ``ImageCollection.fromImages``, ``ImageCollection.mosaic``,
``Image.select``, ``Image.toFloat``, ``Image.unmask``, ``Image.toUint16``.

A ``value:compute`` whose result is an image collection (or an image) answers with Earth
Engine's ``getInfo`` form: ``{"type": "ImageCollection", "features": [...]}``, each image with
its ``bands`` (``id``, ``crs``, ``crs_transform``, ``dimensions``: the raster's own grid) and
``properties`` (``system:time_start``, ``system:index``, ``system:footprint`` and the asset's own).

Pixels: each source image is a real raster file whose bands are named in :class:`Asset`; the
request grid (``crsCode``, ``affineTransform``, ``dimensions``) is filled by reprojecting each
image onto it (nearest, Earth Engine's default), later images of a mosaic on top, and returned
as NPY with one field per band (``fileFormat: NPY``).

Faults per route (``compute``, ``pixels``, ``algorithms``) from a script: ``"429"``, ``"503"``,
``"memory"`` (400 "User memory limit exceeded."), ``"hang"``. ``latency_s`` delays every pixel
answer (realistic round trips for the benchmark); ``max_in_flight`` records the most
computePixels requests it ever served at once; ``token`` (when set) must arrive as a Bearer token.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry

from tests.servers.base import LoopbackServer


@dataclass
class Asset:
    """One Earth Engine image backed by a raster file: its id, bands (file band order) and time."""

    id: str  # full asset id, e.g. "COPERNICUS/S2_SR_HARMONIZED/20210615T102021_T32TMT"
    path: Path
    bands: Sequence[str]
    time: str  # ISO date/time of system:time_start
    properties: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        with rasterio.open(self.path) as ds:
            geom = transform_geom(ds.crs, "EPSG:4326", mapping(box(*ds.bounds)), precision=9)
        self.footprint: BaseGeometry = shape(geom)
        self.crs, self.transform, self.width, self.height = ds.crs.to_string(), ds.transform, ds.width, ds.height
        t = self.time.replace("Z", "+00:00")
        dt = datetime.fromisoformat(t if "T" in t else t + "T00:00:00+00:00")
        self.time_ms = int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1000)

    def prop(self, name: str) -> Any:
        return {"system:id": self.id, "system:index": self.id.rsplit("/", 1)[-1],
                "system:time_start": self.time_ms, **self.properties}.get(name)

    def info(self) -> dict[str, Any]:
        """The image's ``getInfo`` form (every band on the raster's own grid)."""
        t = self.transform
        ring = mapping(self.footprint.exterior) if hasattr(self.footprint, "exterior") else mapping(self.footprint)
        bands = [{"id": str(b), "data_type": {"type": "PixelType", "precision": "int", "min": 0, "max": 65535},
                  "dimensions": [self.width, self.height], "crs": self.crs,
                  "crs_transform": [t.a, t.b, t.c, t.d, t.e, t.f]} for b in self.bands]
        props = {"system:time_start": self.time_ms, "system:index": self.prop("system:index"),
                 "system:footprint": {"type": "LinearRing", "coordinates": [list(c) for c in ring["coordinates"]]},
                 **self.properties}
        return {"type": "Image", "id": self.id, "version": 1, "bands": bands, "properties": props}


@dataclass
class _Img:
    """An image value: layers bottom to top, the bands to output, nodata fill, cast."""

    layers: list[Asset]
    bands: list[str] | None = None  # None: all bands of the first layer
    names: list[str] | None = None
    unmask: float | None = None
    to_float: bool = False
    cast: str | None = None  # a numpy dtype for the output fields (``Image.toUint16``); None: float32


class EEError(Exception):
    def __init__(self, code: int, message: str, status: str = "INVALID_ARGUMENT") -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def _date_ms(v: Any) -> int:
    if isinstance(v, int | float):
        return int(v)
    t = str(v).replace("Z", "+00:00")
    dt = datetime.fromisoformat(t if "T" in t else t + "T00:00:00+00:00")
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1000)


class Interpreter:
    """Evaluates a serialized expression against the server's assets."""

    def __init__(self, collections: dict[str, list[Asset]], images: dict[str, Asset]) -> None:
        self.collections = collections
        self.images = images

    def run(self, expr: dict[str, Any]) -> Any:
        values = expr.get("values", {})
        memo: dict[str, Any] = {}

        def node(n: dict[str, Any]) -> Any:
            if "constantValue" in n:
                return n["constantValue"]
            if "integerValue" in n:
                return int(n["integerValue"])
            if "valueReference" in n:
                ref = n["valueReference"]
                if ref not in memo:
                    memo[ref] = node(values[ref])
                return memo[ref]
            if "arrayValue" in n:
                return [node(v) for v in n["arrayValue"].get("values", [])]
            if "dictionaryValue" in n:
                return {k: node(v) for k, v in n["dictionaryValue"].get("values", {}).items()}
            if "functionInvocationValue" in n:
                f = n["functionInvocationValue"]
                args = {k: node(v) for k, v in f.get("arguments", {}).items()}
                return self.call(f["functionName"], args)
            raise EEError(400, f"Unsupported value node: {sorted(n)}")

        return node(values[expr["result"]])

    def call(self, name: str, a: dict[str, Any]) -> Any:
        if name == "ImageCollection.load":
            cid = a["id"]
            if cid not in self.collections:
                raise EEError(400, f"ImageCollection.load: ImageCollection asset '{cid}' not found "
                                   "(does not exist or caller does not have access).")
            return list(self.collections[cid])
        if name == "Image.load":
            iid = a["id"]
            asset = self.images.get(iid) or next(
                (x for col in self.collections.values() for x in col if x.id == iid), None)
            if asset is None:
                raise EEError(400, f"Image.load: Image asset '{iid}' not found "
                                   "(does not exist or caller does not have access).")
            return _Img([asset])
        if name == "Collection.filter":
            pred = a["filter"]
            return [x for x in a["collection"] if pred(x)]
        if name == "Filter.intersects":
            geom = a.get("rightValue")
            return lambda x: x.footprint.intersects(geom)
        if name == "Filter.dateRangeContains":
            lo, hi = a["leftValue"]
            field_ = a["rightField"]
            return lambda x: lo <= x.prop(field_) < hi
        if name in ("Filter.lessThanOrEquals", "Filter.greaterThanOrEquals", "Filter.lessThan",
                    "Filter.greaterThan"):
            field_, value = a["leftField"], a["rightValue"]
            op = {"Filter.lessThanOrEquals": lambda p: p <= value, "Filter.greaterThanOrEquals": lambda p: p >= value,
                  "Filter.lessThan": lambda p: p < value, "Filter.greaterThan": lambda p: p > value}[name]
            return lambda x: x.prop(field_) is not None and op(x.prop(field_))
        if name == "Filter.and":
            preds = a["filters"]
            return lambda x: all(p(x) for p in preds)
        if name == "Collection.limit":
            items = list(a["collection"])
            key = a.get("key")
            if key is not None:
                items.sort(key=lambda x: (x.prop(key) is None, x.prop(key)), reverse=not a.get("ascending", True))
            lim = a.get("limit")
            return items if lim is None else items[: int(lim)]
        if name == "AggregateFeatureCollection.array":
            return [x.prop(a["property"]) for x in a["collection"]]
        if name == "Element.get":
            obj = a["object"]
            asset = obj.layers[-1] if isinstance(obj, _Img) else obj
            return asset.prop(a["property"])
        if name == "DateRange":
            return (_date_ms(a["start"]), _date_ms(a["end"]) if a.get("end") is not None else 2**62)
        if name == "Date":
            return _date_ms(a["value"])
        if name == "Feature":  # filterBounds wraps its geometry in a Feature
            return a["geometry"]
        if name.startswith("GeometryConstructors."):
            return self._geometry(name.split(".", 1)[1], a)
        if name == "ImageCollection.fromImages":
            return [img for img in a["images"]]
        if name == "ImageCollection.mosaic":
            layers = [img.layers[-1] if isinstance(img, _Img) else img for img in a["collection"]]
            if not layers:
                return _Img([], bands=[])
            return _Img(layers)
        if name == "Image.select":
            img: _Img = a["input"]
            sel = [str(b) for b in a["bandSelectors"]]
            avail = list(img.layers[0].bands) if img.layers else sel
            missing = [b for b in sel if b not in avail]
            if missing:
                raise EEError(400, f"Image.select: Pattern '{missing[0]}' did not match any bands. "
                                   f"Available bands: [{', '.join(avail)}]")
            return _Img(img.layers, sel, a.get("newNames"), img.unmask, img.to_float)
        if name in ("Image.toFloat", "Image.float"):
            img = a["value"] if "value" in a else a["input"]
            return _Img(img.layers, img.bands, img.names, img.unmask, True)
        if name == "Image.toUint16":
            img = a["value"]
            return _Img(img.layers, img.bands, img.names, img.unmask, False, "<u2")
        if name == "Image.constant":
            return float(a["value"])
        if name == "Image.unmask":
            img = a["input"]
            return _Img(img.layers, img.bands, img.names, float(a.get("value", 0.0)), img.to_float)
        raise EEError(400, f"Unknown algorithm: {name}")

    @staticmethod
    def _geometry(kind: str, a: dict[str, Any]) -> BaseGeometry:
        coords = a.get("coordinates")
        if kind == "Rectangle" or kind == "BBox":
            if coords is None:
                coords = [a["west"], a["south"], a["east"], a["north"]]
            flat = np.asarray(coords, dtype=float).ravel()
            return box(flat[0], flat[1], flat[2], flat[3])
        return shape({"type": kind, "coordinates": coords})


def render(img: _Img, grid: dict[str, Any]) -> np.ndarray:
    """The image on the request grid as a structured array (one float32/native field per band)."""
    dims = grid["dimensions"]
    w, h = int(dims["width"]), int(dims["height"])
    t = grid["affineTransform"]
    dst_transform = Affine(t.get("scaleX", 1.0), t.get("shearX", 0.0), t.get("translateX", 0.0),
                           t.get("shearY", 0.0), t.get("scaleY", 1.0), t.get("translateY", 0.0))
    crs = grid.get("crsCode") or "EPSG:4326"
    bands = img.bands or (list(img.layers[0].bands) if img.layers else [])
    names = img.names or bands
    out = np.zeros((len(bands), h, w), np.float32)
    valid = np.zeros((h, w), bool)
    for asset in img.layers:  # bottom to top: later layers overwrite
        idx = [list(asset.bands).index(b) + 1 for b in bands]
        # GDAL's warper onto the request grid reads only the blocks under it (nearest, like EE).
        with rasterio.open(asset.path) as ds, WarpedVRT(ds, crs=crs, transform=dst_transform, width=w, height=h,
                                                        resampling=Resampling.nearest, add_alpha=True) as vrt:
            dst = vrt.read(idx).astype(np.float32)
            dmask = vrt.read(vrt.count)  # the alpha band: 0 off the source raster or where it is masked
        on = dmask > 0
        out[:, on] = dst[:, on]
        valid |= on
    fill = 0.0 if img.unmask is None else img.unmask
    out[:, ~valid] = fill
    dtype = [(str(n), img.cast or "<f4") for n in names]
    result = np.zeros((h, w), dtype=dtype)
    for i, n in enumerate(names):
        result[str(n)] = out[i] if img.cast is None else np.clip(np.rint(out[i]), 0, 65535)
    return result


def info(value: Any) -> Any:
    """A ``value:compute`` result as Earth Engine answers it: collections and images in ``getInfo`` form."""
    if isinstance(value, Asset):
        return value.info()
    if isinstance(value, list) and value and all(isinstance(x, Asset) for x in value):
        return {"type": "ImageCollection", "bands": [], "features": [x.info() for x in value]}
    if isinstance(value, list):
        return [info(x) for x in value]
    if isinstance(value, dict):
        return {k: info(v) for k, v in value.items()}
    return value


class EarthEngineServer(LoopbackServer):
    """A threaded loopback Earth Engine REST server; a context manager."""

    def __init__(
        self,
        assets: Iterable[Asset],
        *,
        collections: dict[str, Sequence[str]] | None = None,
        token: str | None = None,
        latency_s: float = 0.0,
        hang_s: float = 5.0,
    ) -> None:
        """``collections`` maps collection ids to asset ids; by default each asset's parent path."""
        super().__init__()
        self.assets = list(assets)
        by_id = {x.id: x for x in self.assets}
        if collections is None:
            grouped: dict[str, list[Asset]] = {}
            for x in self.assets:
                grouped.setdefault(x.id.rsplit("/", 1)[0], []).append(x)
            self.collections = grouped
        else:
            self.collections = {c: [by_id[i] for i in ids] for c, ids in collections.items()}
        self.interpreter = Interpreter(self.collections, by_id)
        self.token = token
        self.latency_s = latency_s
        self.hang_s = hang_s
        self.hits: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0


    def discovery(self) -> bytes:
        text = resources.files("ee").joinpath("tests/cloud_api_discovery_document.json").read_text()
        doc = json.loads(text)
        doc["rootUrl"] = doc["baseUrl"] = f"{self.url}/"
        return json.dumps(doc).encode()

    def algorithms(self) -> bytes:
        return resources.files("ee").joinpath("tests/algorithms.json").read_bytes()


class _Handler(BaseHTTPRequestHandler):
    app: EarthEngineServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, code: int, message: str, status: str) -> None:
        self._send(code, json.dumps({"error": {"code": code, "message": message, "status": status}}).encode())

    def _authorised(self) -> bool:
        if self.app.token is None:
            return True
        if self.headers.get("Authorization", "") == f"Bearer {self.app.token}":
            return True
        self._error(401, "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                         "login cookie or other valid authentication credential.", "UNAUTHENTICATED")
        return False

    def _fault(self, route: str) -> bool:
        fault = self.app.next_fault(route)
        if fault is None:
            return False
        if fault == "hang":
            time.sleep(self.app.hang_s)
            return False
        if fault == "memory":
            self._error(400, "User memory limit exceeded.", "INVALID_ARGUMENT")
        elif fault == "429":
            self._error(429, "Too many concurrent aggregations.", "RESOURCE_EXHAUSTED")
        else:
            self._error(int(fault), "The service is currently unavailable.", "UNAVAILABLE")
        return True

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path.startswith("/$discovery/rest"):
            self.app.hits["discovery"] += 1
            self._send(200, self.app.discovery())
            return
        if re.match(r"^/v1[a-z0-9]*/projects/[^/]+/algorithms$", path):
            self.app.hits["algorithms"] += 1
            if not self._authorised() or self._fault("algorithms"):
                return
            self._send(200, self.app.algorithms())
            return
        self._error(404, f"Not found: {path}", "NOT_FOUND")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n) or b"{}")
        m = re.match(r"^/v1[a-z0-9]*/projects/([^/]+)/(value:compute|image:computePixels)$", path)
        if m is None:
            self._error(404, f"Not found: {path}", "NOT_FOUND")
            return
        route = "compute" if m.group(2) == "value:compute" else "pixels"
        self.app.hits[route] += 1
        self.app.bodies.append(body)
        if not self._authorised():
            return
        if route == "pixels":
            with self.app._lock:
                self.app.in_flight += 1
                self.app.max_in_flight = max(self.app.max_in_flight, self.app.in_flight)
        try:
            if self._fault(route):
                return
            try:
                value = self.app.interpreter.run(body["expression"])
                if route == "compute":
                    self._send(200, json.dumps({"result": info(value)}).encode())
                    return
                time.sleep(self.app.latency_s)
                if not isinstance(value, _Img):
                    raise EEError(400, "computePixels: the expression is not an Image")
                arr = render(value, body["grid"])
                buf = io.BytesIO()
                np.save(buf, arr, allow_pickle=False)
                self._send(200, buf.getvalue(), "application/octet-stream")
            except EEError as exc:
                self._error(exc.code, exc.message, exc.status)
        finally:
            if route == "pixels":
                with self.app._lock:
                    self.app.in_flight -= 1


EarthEngineServer.handler = _Handler
