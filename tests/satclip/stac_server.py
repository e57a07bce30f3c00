"""A loopback STAC API (landing page, item search by point/bbox/datetime/cloud cover) that also
serves files with HTTP range requests, with injectable faults: 429s on search, vanished files."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#query",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]


@dataclass
class StacState:
    items: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    fail_searches: int = 0  # answer this many searches with 429 first
    gone: set[str] = field(default_factory=set)  # file names answered with 404
    hits: Counter = field(default_factory=Counter)


def _match(item: dict[str, Any], body: dict[str, Any]) -> bool:
    w, s, e, n = item["bbox"]
    if body.get("collections") and item.get("collection") not in body["collections"]:
        return False
    if body.get("bbox"):
        bw, bs, be, bn = (float(v) for v in body["bbox"])
        if be < w or bw > e or bn < s or bs > n:
            return False
    geom = body.get("intersects")
    if geom:
        x, y = geom["coordinates"]
        if not (w <= x <= e and s <= y <= n):
            return False
    dt = body.get("datetime")
    day = item["properties"].get("datetime", "")[:10]
    if dt and day:
        start, _, end = str(dt).partition("/")
        if start not in ("", "..") and day < start[:10]:
            return False
        if end not in ("", "..") and day > end[:10]:
            return False
    for prop, ops in (body.get("query") or {}).items():
        value = item["properties"].get(prop)
        for op, ref in ops.items():
            if value is None or not {
                "lt": value < ref,
                "lte": value <= ref,
                "gt": value > ref,
                "gte": value >= ref,
                "eq": value == ref,
            }.get(op, True):
                return False
    return True


def make_handler(state: StacState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, obj: Any, code: int = 200, headers: dict[str, str] | None = None) -> None:
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _base(self) -> str:
            return f"http://{self.headers['Host']}"

        def _landing(self) -> None:
            base = self._base()
            self._json(
                {
                    "type": "Catalog",
                    "id": "loopback",
                    "stac_version": "1.0.0",
                    "description": "test",
                    "conformsTo": CONFORMANCE,
                    "links": [
                        {"rel": "self", "href": base + "/", "type": "application/json"},
                        {"rel": "root", "href": base + "/", "type": "application/json"},
                        {"rel": "search", "href": base + "/search", "type": "application/geo+json", "method": "GET"},
                        {"rel": "search", "href": base + "/search", "type": "application/geo+json", "method": "POST"},
                        {"rel": "conformance", "href": base + "/conformance"},
                    ],
                }
            )

        def _search(self, body: dict[str, Any]) -> None:
            state.hits["search"] += 1
            if state.fail_searches > 0:
                state.fail_searches -= 1
                self._json({"code": "TooManyRequests"}, 429, {"Retry-After": "0"})
                return
            feats = [it for it in state.items if _match(it, body)]
            limit = int(body.get("limit") or 1000)
            self._json({"type": "FeatureCollection", "features": feats[:limit], "links": []})

        def _file(self, name: str, head: bool) -> None:
            state.hits["file"] += 1
            path = state.files.get(name)
            if path is None or name in state.gone:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = path.read_bytes()
            rng = self.headers.get("Range")
            m = re.match(r"bytes=(\d+)-(\d*)", rng or "")
            if m:
                start = int(m.group(1))
                end = min(int(m.group(2)) if m.group(2) else len(data) - 1, len(data) - 1)
                chunk = data[start : end + 1]
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            else:
                chunk = data
                self.send_response(200)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "image/tiff")
            self.send_header("Content-Length", str(len(chunk)))
            self.end_headers()
            if not head:
                self.wfile.write(chunk)

        def do_HEAD(self) -> None:
            path = urlparse(self.path).path
            if path.startswith("/files/"):
                self._file(path[len("/files/") :], head=True)
            else:
                self.send_response(200)
                self.end_headers()

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path in ("", "/"):
                self._landing()
            elif url.path == "/conformance":
                self._json({"conformsTo": CONFORMANCE})
            elif url.path == "/search":
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                body: dict[str, Any] = {"datetime": q.get("datetime"), "limit": q.get("limit")}
                if "collections" in q:
                    body["collections"] = q["collections"].split(",")
                if "bbox" in q:
                    body["bbox"] = [float(v) for v in q["bbox"].split(",")]
                if "intersects" in q:
                    body["intersects"] = json.loads(q["intersects"])
                if "query" in q:
                    body["query"] = json.loads(q["query"])
                self._search(body)
            elif url.path.startswith("/files/"):
                self._file(url.path[len("/files/") :], head=False)
            else:
                self._json({"code": "NotFound"}, 404)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if urlparse(self.path).path == "/search":
                self._search(body)
            else:
                self._json({"code": "NotFound"}, 404)

    return Handler


class StacServer:
    """``with StacServer(state) as url:`` — a loopback server on a free port."""

    def __init__(self, state: StacState) -> None:
        self.state = state
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> str:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
