"""Overpass source: polite, concurrent queries assembled into the file source's records."""

from __future__ import annotations

import dataclasses
import random
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import osmium

from pipeline.config import OsmConfig
from pipeline.errors import BadInputError, OsmSourceError
from pipeline.geo import BBox
from pipeline.osm.idset import IdSet
from pipeline.osm.overpass_client import OverpassClient
from pipeline.osm.overpass_json import elements_to_osm_xml
from pipeline.osm.overpass_ql import QueryLimits, Tag, build_query, parse_query, split_bbox
from pipeline.osm.reader import iter_osm
from pipeline.osm.select import SelectAll, SelectBBox, Selector
from pipeline.records import OsmObject


def _default_cache() -> str:
    return str(Path.home() / ".cache" / "skyscript" / "overpass")


@dataclass(frozen=True)
class OverpassConfig:
    """Endpoints and politeness settings (defaults suit the public instances)."""

    endpoints: tuple[str, ...] = ("https://overpass-api.de/api", "https://overpass.private.coffee/api")
    slots_per_endpoint: int = 2  # concurrent queries per endpoint, shared by all local processes
    socket_timeout_s: float = 240.0  # per socket operation; above the server-side [timeout:]
    read_deadline_s: float = 900.0  # whole body
    attempts: int = 5
    backoff_s: float = 2.0
    max_backoff_s: float = 120.0
    status_max_wait_s: float = 600.0
    slot_max_wait_s: float = 3600.0
    limits: QueryLimits = field(default_factory=QueryLimits)
    max_query_deg: float = 0.25  # a --bbox larger than this is split into tiles
    cache_dir: str | None = field(default_factory=_default_cache)  # None: no cache
    slot_dir: str | None = None  # None: <tmp>/skyscript-overpass-slots
    user_agent: str = "skyscript-toolkit/0.1 (+https://github.com/; dataset research)"

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise BadInputError("Overpass endpoint list is empty; pass overpass:URL")
        object.__setattr__(self, "endpoints", tuple(normalise_endpoint(e) for e in self.endpoints))

    def with_endpoints(self, endpoints: Iterable[str]) -> OverpassConfig:
        return dataclasses.replace(self, endpoints=tuple(endpoints))

    def replace(self, **changes: Any) -> OverpassConfig:
        return dataclasses.replace(self, **changes)


def normalise_endpoint(url: str) -> str:
    """``https://host/api`` from ``https://host/api/``, ``.../api/interpreter`` or ``.../api/status``."""
    text = url.strip().rstrip("/")
    for suffix in ("/interpreter", "/status"):
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadInputError(f"bad Overpass endpoint {url!r}: use overpass:https://host/api")
    return text


def _public(url: str) -> str:
    """The endpoint without any user:password part (describe() goes to run.json)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def objects_from_elements(
    elements: list[dict[str, Any]], label: str, cfg: OsmConfig | None = None, selector: Selector | None = None
) -> Iterator[OsmObject]:
    """Overpass elements → OsmObjects through the same pyosmium pass as files."""
    buffer = osmium.io.FileBuffer(elements_to_osm_xml(elements), "osm")
    return iter_osm(buffer, label, cfg, selector, error=OsmSourceError)


class OverpassSource:
    """``objects(bbox)`` tiles the box; ``run_queries`` serves cell and targeted plans."""

    def __init__(
        self,
        overpass: OverpassConfig | None = None,
        config: OsmConfig | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        workers: int | None = None,
    ) -> None:
        self.overpass = overpass or OverpassConfig()
        self.config = config or OsmConfig()
        self.client = OverpassClient(self.overpass, sleep=sleep, rng=rng)
        self.workers = workers or self.overpass.slots_per_endpoint * len(self.overpass.endpoints)
        self.failures: list[tuple[str, str]] = []  # (query, reason) when run with keep_going

    def describe(self) -> dict[str, Any]:
        o = self.overpass
        return {
            "kind": "overpass",
            "endpoints": [_public(e) for e in o.endpoints],
            "slots_per_endpoint": o.slots_per_endpoint,
            "timeout_s": o.limits.timeout_s,
            "maxsize_bytes": o.limits.maxsize_bytes,
            "cache": o.cache_dir is not None,
        }

    def query(self, bbox: BBox | None, tags: list[Tag] | None = None) -> list[str]:
        """QL for a box (tiled to ``max_query_deg``) and optional tags."""
        if bbox is None:
            return [build_query(None, tags, self.overpass.limits)]
        return [build_query(t, tags, self.overpass.limits) for t in split_bbox(bbox, self.overpass.max_query_deg)]

    def objects(self, bbox: BBox | None = None) -> Iterator[OsmObject]:
        if bbox is None:
            raise BadInputError("the Overpass source needs --bbox, --cells or --tags; it never fetches the planet")
        return self.run_queries(self.query(bbox), SelectBBox(bbox))

    def run_queries(
        self,
        queries: Iterable[str],
        selector: Selector | None = None,
        keep_going: bool = False,
        on_done: Callable[[str], None] | None = None,
    ) -> Iterator[OsmObject]:
        """Objects of all ``queries`` (concurrently, each object once).

        Without ``selector`` each query's own bbox (either syntax) selects its objects.
        With ``keep_going`` a query that still fails after retries is recorded in
        ``failures`` and the run continues; otherwise its :class:`OsmSourceError` propagates.
        """
        seen = {t: IdSet() for t in ("node", "way", "relation")}  # compact even for millions of ids
        for query, result in self._fetch_all(queries):
            if on_done is not None:
                on_done(query)
            if isinstance(result, BaseException):
                if not keep_going or not isinstance(result, OsmSourceError):
                    raise result
                self.failures.append((query, str(result)))
                continue
            sel = selector or _selector_of(query)
            for obj in objects_from_elements(result, f"Overpass response to {query[:80]!r}", self.config, sel):
                if obj.osm_id not in seen[obj.osm_type]:
                    seen[obj.osm_type].add(obj.osm_id)
                    yield obj

    def _fetch_all(self, queries: Iterable[str]) -> Iterator[tuple[str, list[dict[str, Any]] | BaseException]]:
        """Results as they complete; at most ``2 * workers`` queries in flight (bounded memory)."""
        pending: dict[Future[list[dict[str, Any]]], str] = {}
        it = iter(queries)
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="overpass") as pool:
            while True:
                while len(pending) < 2 * self.workers and (q := next(it, None)) is not None:
                    pending[pool.submit(self.client.fetch, q)] = q
                if not pending:
                    return
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    q = pending.pop(fut)
                    exc = fut.exception()
                    yield q, (exc if exc is not None else fut.result())


def _selector_of(query: str) -> Selector:
    parsed = parse_query(query)
    return SelectAll() if parsed.bbox is None else SelectBBox(parsed.bbox)
