"""A loopback stand-in for ``flickr.photos.search``: a seeded photo universe, Flickr's JSON shape,
paging, the 4,000-result cap (later pages repeat the last reachable page, as Flickr does), an
invalid-key error and injected faults (HTTP 429/5xx, Flickr code 105)."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np

VALID_KEY = "k3y-SECRET-0123456789abcdef"
CAP = 4000


@dataclass
class Universe:
    photos: list[dict[str, Any]]
    faults: list[tuple[int, dict[str, Any] | None, dict[str, str]]] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def make_universe(n: int, bbox: tuple[float, float, float, float], seed: int = 0) -> Universe:
    rng = np.random.default_rng(seed)
    w, s, e, nn = bbox
    t0 = datetime(2015, 1, 1)
    photos = []
    for i in range(n):
        taken = t0 + timedelta(seconds=int(rng.integers(0, 5 * 365 * 86400)))
        pid = str(10_000_000 + i)
        photos.append({
            "id": pid, "owner": f"{i % 97}@N00", "secret": f"{i:010x}", "server": str(1000 + i % 50), "farm": 1,
            "title": f"photo {i}", "ispublic": 1, "isfriend": 0, "isfamily": 0,
            "datetaken": taken.strftime("%Y-%m-%d %H:%M:%S"), "datetakengranularity": 0,
            "datetakenunknown": "1" if i % 53 == 0 else "0",
            "latitude": f"{rng.uniform(s, nn):.6f}", "longitude": f"{rng.uniform(w, e):.6f}",
            "accuracy": str(int(rng.choice([16, 16, 16, 15, 11]))), "context": 0,
            "url_z": f"https://live.staticflickr.com/{1000 + i % 50}/{pid}_{i:010x}_z.jpg",
        })
    return Universe(photos)


def _match(p: dict[str, Any], q: dict[str, str]) -> bool:
    lat, lon = float(p["latitude"]), float(p["longitude"])
    if "bbox" in q:
        w, s, e, n = (float(v) for v in q["bbox"].split(","))
        if not (w <= lon <= e and s <= lat <= n):
            return False
    else:
        r = float(q["radius"])
        la, lo = float(q["lat"]), float(q["lon"])
        d = 6371.0 * math.hypot(math.radians(lat - la), math.radians(lon - lo) * math.cos(math.radians(la)))
        if d > r:
            return False
    return q["min_taken_date"] <= p["datetaken"] <= q["max_taken_date"]


class _Handler(BaseHTTPRequestHandler):
    universe: Universe

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def _send(self, code: int, body: dict[str, Any] | None, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b"<html>oops</html>"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
        u = self.universe
        with u.lock:
            u.requests.append(q)
            fault = u.faults.pop(0) if u.faults else None
        if fault is not None:
            return self._send(*fault)
        if q.get("api_key") != VALID_KEY:
            return self._send(200, {"stat": "fail", "code": 100, "message": "Invalid API Key (Key has invalid format)"})
        hits = sorted((p for p in u.photos if _match(p, q)), key=lambda p: (p["datetaken"], p["id"]))
        per_page = int(q.get("per_page", 100))
        page = int(q.get("page", 1))
        last_reachable = max(1, math.ceil(min(len(hits), CAP) / per_page))
        eff = min(page, last_reachable)  # past the cap Flickr keeps answering the last reachable page
        chunk = hits[(eff - 1) * per_page : eff * per_page]
        body = {"photos": {"page": page, "pages": math.ceil(len(hits) / per_page), "perpage": per_page,
                           "total": len(hits), "photo": chunk}, "stat": "ok"}
        return self._send(200, body)


@contextmanager
def serve(universe: Universe) -> Iterator[str]:
    handler = type("H", (_Handler,), {"universe": universe})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/services/rest/"
    finally:
        srv.shutdown()
        srv.server_close()
