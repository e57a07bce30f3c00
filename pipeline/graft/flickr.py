"""Flickr API photo source: ``flickr.photos.search`` by bbox or point + radius.

Geotagged photos only (``has_geo``), photos only (``content_type=1``, ``media=photos``), a
taken-date range, geotag accuracy ≥ 15 (filtered on the returned ``accuracy``). Flickr returns at
most 4,000 distinct results per query however many pages are asked for, so a query whose total is
above the cap is split — a bbox into quadrants, otherwise the taken-date range in halves — until
every part is under it (a part that cannot be split further keeps its first 4,000 and the rest is
counted as ``truncated``).

One ``requests`` session; calls spaced by ``min_interval`` (Flickr allows 3,600 calls/hour);
429/5xx/timeouts and Flickr's "service unavailable" are retried with backoff (the project's one
retry helper); responses are cached on disk by a hash of the parameters *without* the key, and
only on success. The API key is sent but never logged, cached, written or put into an error
message (exceptions from ``requests`` carry URLs, so their text is scrubbed).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from pipeline.errors import BadInputError, SkyScriptError
from pipeline.graft.photos import GroundPhoto, PhotoTable, Rejected, _valid_coords, parse_date
from pipeline.retry import Retryable, RetryPolicy, retry_call
from storage.atomic import publishing

FLICKR_REST = "https://api.flickr.com/services/rest/"
RESULT_CAP = 4000
MIN_ACCURACY = 15
EXTRAS = "geo,date_taken,url_z,url_c,owner_name,license"
# Flickr error codes worth retrying (service unavailable / temporarily down).
_RETRY_CODES = {105, 106, 201}
_AUTH_CODES = {100, 98, 99}
MIN_SPLIT_DEG = 1e-4  # ~10 m: below this a bbox is not split further
MIN_SPLIT_SECONDS = 3600.0


class FlickrError(SkyScriptError, RuntimeError):
    """The Flickr API refused a request in a way retries cannot fix."""


class FlickrAuthError(FlickrError):
    """The API key is missing or invalid."""


@dataclass(frozen=True, slots=True)
class FlickrQuery:
    """A search area (bbox W,S,E,N or lat/lon + radius in km, ≤ 32) and a taken-date range (ISO)."""

    bbox: tuple[float, float, float, float] | None = None
    lat: float | None = None
    lon: float | None = None
    radius_km: float | None = None
    min_taken: str = "2004-01-01T00:00:00"
    max_taken: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT00:00:00"))
    min_accuracy: int = MIN_ACCURACY

    def __post_init__(self) -> None:
        if (self.bbox is None) == (self.lat is None or self.lon is None or self.radius_km is None):
            raise BadInputError("a Flickr query needs either a bbox (W,S,E,N) or lat, lon and radius_km")
        if self.radius_km is not None and not (0 < self.radius_km <= 32):
            raise BadInputError(f"Flickr radius must be in (0, 32] km, got {self.radius_km}")
        if self.bbox is not None:
            w, s, e, n = self.bbox
            if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
                raise BadInputError(f"Flickr bbox must be W,S,E,N with W<E and S<N in degrees, got {self.bbox}")
        for name in ("min_taken", "max_taken"):
            value, ok = parse_date(getattr(self, name))
            if not ok or value is None:
                raise BadInputError(f"Flickr {name} {getattr(self, name)!r} is not a date (use YYYY-MM-DD)")
            object.__setattr__(self, name, value)
        if self.min_taken >= self.max_taken:
            raise BadInputError(f"Flickr taken-date range is empty: {self.min_taken} .. {self.max_taken}")

    def params(self) -> dict[str, str]:
        p = {
            "method": "flickr.photos.search", "has_geo": "1", "content_type": "1", "media": "photos",
            "extras": EXTRAS, "min_taken_date": self.min_taken.replace("T", " "),
            "max_taken_date": self.max_taken.replace("T", " "), "format": "json", "nojsoncallback": "1",
            "sort": "date-taken-asc",
        }
        if self.bbox is not None:
            p["bbox"] = ",".join(f"{v:.6f}" for v in self.bbox)
        else:
            p.update(lat=f"{self.lat:.6f}", lon=f"{self.lon:.6f}", radius=f"{self.radius_km:g}", radius_units="km")
        return p

    def split(self) -> list[FlickrQuery] | None:
        """Smaller queries covering this one (quadrants, else date halves); None if it cannot be split."""
        if self.bbox is not None:
            w, s, e, n = self.bbox
            if e - w > MIN_SPLIT_DEG and n - s > MIN_SPLIT_DEG:
                mx, my = (w + e) / 2, (s + n) / 2
                return [replace(self, bbox=b) for b in ((w, s, mx, my), (mx, s, e, my), (w, my, mx, n), (mx, my, e, n))]
        t0 = datetime.fromisoformat(self.min_taken).timestamp()
        t1 = datetime.fromisoformat(self.max_taken).timestamp()
        if t1 - t0 <= MIN_SPLIT_SECONDS:
            return None
        mid = datetime.fromtimestamp((t0 + t1) / 2).strftime("%Y-%m-%dT%H:%M:%S")
        return [replace(self, max_taken=mid), replace(self, min_taken=mid)]


def parse_flickr_spec(spec: str, **kw: Any) -> FlickrQuery:
    """``flickr:W,S,E,N`` (bbox) or ``flickr:LAT,LON,RADIUS_KM`` (point + radius)."""
    body = spec.split(":", 1)[1] if spec.lower().startswith("flickr:") else spec
    try:
        nums = [float(v) for v in body.split(",")]
    except ValueError as exc:
        raise BadInputError(f"{spec!r}: use flickr:W,S,E,N or flickr:LAT,LON,RADIUS_KM (numbers)") from exc
    if len(nums) == 4:
        return FlickrQuery(bbox=(nums[0], nums[1], nums[2], nums[3]), **kw)
    if len(nums) == 3:
        return FlickrQuery(lat=nums[0], lon=nums[1], radius_km=nums[2], **kw)
    raise BadInputError(f"{spec!r}: use flickr:W,S,E,N or flickr:LAT,LON,RADIUS_KM")


class FlickrClient:
    """A rate-limited, retrying, caching ``flickr.photos.search`` client."""

    def __init__(
        self,
        api_key: str,
        *,
        endpoint: str = FLICKR_REST,
        cache_dir: Path | None = None,
        min_interval: float = 1.0,
        policy: RetryPolicy | None = None,
        timeout: float = 60.0,
        per_page: int = 250,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not api_key or not api_key.strip():
            raise FlickrAuthError("no Flickr API key: set FLICKR_API_KEY (get one at flickr.com/services/api/keys)")
        self._key = api_key.strip()
        self.endpoint = endpoint
        self.cache_dir = cache_dir
        self.min_interval = min_interval
        self.policy = policy or RetryPolicy(attempts=5, base_delay=2.0, max_delay=120.0)
        self.timeout = timeout
        self.per_page = max(1, min(500, per_page))
        self._sleep = sleep
        self._session = requests.Session()
        self._lock = threading.Lock()
        self._last = 0.0
        self.calls = 0  # HTTP requests actually sent
        self.cache_hits = 0

    def __repr__(self) -> str:  # never show the key
        return f"FlickrClient(endpoint={self.endpoint!r})"

    def describe(self) -> dict[str, Any]:
        return {"name": "flickr", "endpoint": self.endpoint, "per_page": self.per_page,
                "min_interval_s": self.min_interval}

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***")

    def _wait_turn(self) -> None:
        with self._lock:
            wait = self._last + self.min_interval - time.monotonic()
            if wait > 0:
                self._sleep(wait)
            self._last = time.monotonic()

    def _cache_file(self, params: dict[str, str]) -> Path | None:
        if self.cache_dir is None:
            return None
        h = hashlib.sha256(json.dumps([self.endpoint, params], sort_keys=True).encode()).hexdigest()
        return self.cache_dir / h[:2] / f"{h}.json"

    def call(self, params: dict[str, str]) -> dict[str, Any]:
        """One API call (cached on success); raises :class:`FlickrError` on a final failure."""
        cached = self._cache_file(params)
        if cached is not None and cached.is_file():
            self.cache_hits += 1
            return dict(json.loads(cached.read_text()))
        try:
            body = retry_call(lambda _attempt: self._once(params), self.policy, sleep=self._sleep)
        except Retryable as exc:
            raise FlickrError(f"Flickr API kept failing after {self.policy.attempts} attempts: {exc}") from None
        if cached is not None:
            with publishing(cached) as tmp:
                tmp.write_text(json.dumps(body))
        return body

    def _once(self, params: dict[str, str]) -> dict[str, Any]:
        self._wait_turn()
        self.calls += 1
        try:
            r = self._session.get(self.endpoint, params={**params, "api_key": self._key}, timeout=self.timeout)
        except requests.RequestException as exc:
            # The exception text holds the full URL, key included: never let it out unscrubbed.
            raise Retryable(self._scrub(f"{type(exc).__name__}: {exc}")) from None
        if r.status_code == 429 or r.status_code >= 500:
            ra = r.headers.get("Retry-After")
            raise Retryable(f"HTTP {r.status_code}", float(ra) if ra and ra.replace(".", "").isdigit() else None)
        if r.status_code >= 400:
            raise FlickrError(f"Flickr API answered HTTP {r.status_code}: {self._scrub(r.text[:200])}")
        try:
            body = r.json()
        except ValueError:
            raise Retryable("truncated or non-JSON response") from None
        if body.get("stat") == "ok":
            return dict(body)
        code, msg = int(body.get("code", -1)), self._scrub(str(body.get("message", "")))
        if code in _AUTH_CODES:
            raise FlickrAuthError(
                f"Flickr rejected the API key (code {code}: {msg}); set FLICKR_API_KEY to a valid key"
            )
        if code in _RETRY_CODES:
            raise Retryable(f"Flickr error {code}: {msg}")
        raise FlickrError(f"Flickr API error {code}: {msg}")

    def search(self, query: FlickrQuery, stats: dict[str, int] | None = None) -> Iterator[dict[str, Any]]:
        """Every raw photo record of ``query`` (splitting it past the 4,000 cap); may repeat ids."""
        stats = stats if stats is not None else {}
        first = self.call({**query.params(), "page": "1", "per_page": str(self.per_page)})
        total = int(first["photos"].get("total", 0))
        if total > RESULT_CAP:
            parts = query.split()
            if parts is not None:
                stats["splits"] = stats.get("splits", 0) + 1
                for part in parts:
                    yield from self.search(part, stats)
                return
            stats["truncated"] = stats.get("truncated", 0) + total - RESULT_CAP
        reachable = min(total, RESULT_CAP)
        pages = max(1, math.ceil(reachable / self.per_page))
        yield from first["photos"].get("photo", [])
        for page in range(2, pages + 1):
            body = self.call({**query.params(), "page": str(page), "per_page": str(self.per_page)})
            got = body["photos"].get("photo", [])
            if not got:
                break
            yield from got


def photo_from_flickr(rec: dict[str, Any], min_accuracy: int) -> GroundPhoto | Rejected:
    pid = str(rec.get("id", "")).strip()
    try:
        lat, lon = float(rec.get("latitude", "nan")), float(rec.get("longitude", "nan"))
    except (TypeError, ValueError):
        lat = lon = float("nan")
    why = _valid_coords(lon, lat)
    if why:
        return Rejected(pid, "bad_coordinates", why)
    acc = int(float(rec.get("accuracy") or 0))
    if acc < min_accuracy:
        return Rejected(pid, "low_accuracy", f"geotag accuracy {acc} < {min_accuracy}", lon, lat)
    date, ok = (None, True) if str(rec.get("datetakenunknown", "0")) == "1" else parse_date(rec.get("datetaken"))
    if not ok:
        return Rejected(pid, "bad_date", f"cannot parse datetaken {rec.get('datetaken')!r}", lon, lat)
    url = rec.get("url_z") or rec.get("url_c")
    if not url and rec.get("server") and rec.get("secret"):
        url = f"https://live.staticflickr.com/{rec['server']}/{pid}_{rec['secret']}_z.jpg"
    return GroundPhoto(pid, lon, lat, date, url=url or None, accuracy=acc)


def flickr_photos(client: FlickrClient, query: FlickrQuery) -> tuple[PhotoTable, dict[str, int]]:
    """Search, dedupe by id, validate: the same :class:`PhotoTable` a local table gives."""
    stats: dict[str, int] = {}
    photos: list[GroundPhoto] = []
    rejected: list[Rejected] = []
    seen: set[str] = set()
    n = 0
    for rec in client.search(query, stats):
        n += 1
        out = photo_from_flickr(rec, query.min_accuracy)
        if out.photo_id in seen:
            rejected.append(Rejected(out.photo_id, "duplicate", f"photo id {out.photo_id} returned more than once"))
            continue
        seen.add(out.photo_id)
        (photos if isinstance(out, GroundPhoto) else rejected).append(out)  # type: ignore[arg-type]
    stats.update(calls=client.calls, cache_hits=client.cache_hits)
    cols: dict[str, str | None] = {"id": "id", "lat": "latitude", "lon": "longitude", "date": "datetaken",
                                   "url": "url_z", "path": None, "indoor": None, "accuracy": "accuracy"}
    return PhotoTable(photos, rejected, cols, rows_in=n), stats
