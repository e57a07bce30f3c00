"""A thin Overpass HTTP client: status-aware slots, bounded retries, socket timeouts, cache.

Why not overpy's ``Overpass.query``: it has no socket timeout (a hung server hangs the run),
no retries, no ``/api/status`` handling, and rejects any content type but exactly
``application/json``; its Result model would be re-assembled into geometry anyway. This
client keeps overpy's checks (content type, runtime-error remarks raise) and adds the rest
with the standard library only.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import random
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import OsmSourceError
from pipeline.osm.slots import EndpointSlots
from pipeline.retry import Retryable, RetryPolicy, retry_call

if TYPE_CHECKING:  # the settings live in pipeline.config: no import circle with pipeline.osm.overpass
    from pipeline.config import OverpassConfig

RETRY_STATUS = frozenset({429, 502, 503, 504})
_RUNTIME = re.compile(r"runtime error|timed out|out of memory", re.IGNORECASE)
_TITLE = re.compile(rb"<title>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def status_wait_seconds(text: str | None) -> float:
    """Seconds to wait before a query may start, from an ``/api/status`` body (0: go now).

    An unreadable status (None) means "unknown": go, and let 429s pace us.
    """
    if not text:
        return 0.0
    m = re.search(r"Rate limit:\s*(\d+)", text)
    if m and int(m.group(1)) == 0:
        return 0.0  # instance without a per-client limit
    m = re.search(r"(\d+)\s+slots? available now", text)
    if m and int(m.group(1)) > 0:
        return 0.0
    waits = [int(s) for s in re.findall(r"Slot available after:.*?in\s+(-?\d+)\s+seconds?", text)]
    if waits:
        return float(max(1, min(waits)))
    return 1.0  # no free slot and no hint: poll again shortly


def _snippet(body: bytes, limit: int = 200) -> str:
    m = _TITLE.search(body)
    text = m.group(1) if m else re.sub(rb"<[^>]+>", b" ", body)
    return " ".join(text.decode("utf-8", "replace").split())[:limit]


def parse_response(body: bytes, content_type: str, endpoint: str) -> list[dict[str, Any]]:
    """Elements of a 200 response; anything that is not a complete result is :class:`Retryable`."""
    ctype = content_type.split(";")[0].strip().lower()
    if ctype != "application/json":
        if ctype == "text/html" or body.lstrip()[:1] == b"<":
            raise Retryable(f"{endpoint} returned HTML instead of JSON: {_snippet(body)!r}")
        raise Retryable(f"{endpoint} returned content type {content_type or 'none'!r}, not application/json")
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise Retryable(f"{endpoint} returned truncated or invalid JSON ({len(body)} bytes): {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("elements"), list):
        raise Retryable(f"{endpoint} returned JSON without an 'elements' list")
    remark = str(data.get("remark") or "")
    if _RUNTIME.search(remark):
        raise Retryable(f"{endpoint} reported a runtime error, not a result: {remark.strip()[:300]}")
    return data["elements"]


class ResponseCache:
    """Raw response bodies by SHA-256 of the query; written only after a response parsed cleanly."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, query: str) -> Path:
        digest = hashlib.sha256(query.encode()).hexdigest()
        return self.root / digest[:2] / f"{digest}.json.gz"

    def get(self, query: str) -> bytes | None:
        path = self._path(query)
        try:
            return gzip.decompress(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, EOFError):
            path.unlink(missing_ok=True)  # a corrupt entry is dropped, then re-fetched
            return None

    def put(self, query: str, body: bytes) -> None:
        path = self._path(query)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_bytes(gzip.compress(body, compresslevel=5))
        os.replace(tmp, path)


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


class OverpassClient:
    """Fetches query results from an endpoint list; thread-safe (share one per process)."""

    def __init__(
        self, cfg: OverpassConfig, sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None
    ) -> None:
        self.cfg = cfg
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.slots = EndpointSlots(cfg.slot_dir, cfg.slots_per_endpoint, sleep=sleep)
        self.cache = ResponseCache(cfg.cache_dir) if cfg.cache_dir else None
        self.policy = RetryPolicy(cfg.attempts, cfg.backoff_s, cfg.max_backoff_s)
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._default = urllib.request.build_opener()

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.stats[name] += n

    def fetch(self, query: str) -> list[dict[str, Any]]:
        """Elements for ``query`` (cache first); :class:`OsmSourceError` once retries run out."""
        if self.cache is not None and (cached := self.cache.get(query)) is not None:
            self.count("cache_hits")
            return json.loads(cached)["elements"]
        endpoints = self.cfg.endpoints
        start = int(hashlib.sha256(query.encode()).hexdigest(), 16) % len(endpoints)

        def attempt(i: int) -> tuple[bytes, list[dict[str, Any]]]:
            endpoint = endpoints[(start + i) % len(endpoints)]
            with self.slots.hold(endpoint, self.cfg.slot_max_wait_s):
                self._wait_for_server_slot(endpoint)
                body, ctype = self._post(endpoint, query)
            return body, parse_response(body, ctype, endpoint)

        try:
            body, elements = retry_call(
                attempt, self.policy, sleep=self.sleep, rng=self.rng, on_retry=lambda *_: self.count("retries")
            )
        except Retryable as exc:
            raise OsmSourceError(
                f"Overpass query failed after {self.policy.attempts} attempts on {list(endpoints)}: {exc}. "
                "Try again later, add endpoints, or split the area into smaller cells."
            ) from exc
        if self.cache is not None:
            self.cache.put(query, body)
        return elements

    def _open(self, request: urllib.request.Request, timeout: float) -> Any:
        opener = self._direct if _is_loopback(request.full_url) else self._default
        return opener.open(request, timeout=timeout)

    def _get_status(self, endpoint: str) -> str | None:
        request = urllib.request.Request(f"{endpoint}/status", headers={"User-Agent": self.cfg.user_agent})
        try:
            with self._open(request, min(self.cfg.socket_timeout_s, 30.0)) as resp:
                return resp.read(65536).decode("utf-8", "replace")
        except (OSError, http.client.HTTPException, ValueError):
            return None

    def _wait_for_server_slot(self, endpoint: str) -> None:
        deadline = time.monotonic() + self.cfg.status_max_wait_s
        while True:
            self.count("status_checks")
            wait = status_wait_seconds(self._get_status(endpoint))
            if wait <= 0:
                return
            if time.monotonic() + wait > deadline:
                raise Retryable(f"{endpoint} reported no free slot for {self.cfg.status_max_wait_s:.0f} s")
            self.count("status_waits")
            self.sleep(wait + self.rng.uniform(0, 0.5))

    def _post(self, endpoint: str, query: str) -> tuple[bytes, str]:
        data = urllib.parse.urlencode({"data": query}).encode()
        headers = {"User-Agent": self.cfg.user_agent, "Accept": "application/json"}
        request = urllib.request.Request(f"{endpoint}/interpreter", data=data, headers=headers)
        self.count("requests")
        try:
            with self._open(request, self.cfg.socket_timeout_s) as resp:
                return self._read(resp, endpoint), resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            self.count(f"http_{exc.code}")
            if exc.code in RETRY_STATUS:
                raise Retryable(f"{endpoint} answered HTTP {exc.code}", _retry_after(exc.headers)) from exc
            raise OsmSourceError(f"{endpoint} rejected the query (HTTP {exc.code}): {_snippet(exc.read())}") from exc
        except (OSError, http.client.HTTPException) as exc:  # timeouts, refused, reset, truncated
            self.count("connection_errors")
            raise Retryable(f"{endpoint} unreachable, too slow or cut off: {exc!r}") from exc

    def _read(self, resp: Any, endpoint: str) -> bytes:
        """Whole body, but never longer than ``read_deadline_s`` (a trickling server is a hang too)."""
        deadline = time.monotonic() + self.cfg.read_deadline_s
        chunks = []
        while chunk := resp.read(1 << 16):
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise Retryable(f"{endpoint} took longer than {self.cfg.read_deadline_s:.0f} s to send a response")
        return b"".join(chunks)


def _retry_after(headers: Any) -> float | None:
    try:
        return float(headers.get("Retry-After")) if headers and headers.get("Retry-After") else None
    except (TypeError, ValueError):
        return None
