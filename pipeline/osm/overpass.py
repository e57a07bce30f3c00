"""Overpass source: polite, concurrent queries assembled into the file source's records."""

from __future__ import annotations

import random
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import osmium

from pipeline.config import OsmConfig, OverpassConfig, normalise_endpoint
from pipeline.errors import BadInputError, OsmSourceError
from pipeline.geo import BBox
from pipeline.osm.idset import IdSet
from pipeline.osm.overpass_client import OverpassClient
from pipeline.osm.overpass_json import elements_to_osm_xml
from pipeline.osm.overpass_ql import Tag, build_query, parse_query, split_bbox
from pipeline.osm.reader import iter_osm
from pipeline.osm.select import SelectAll, SelectBBox, Selector
from pipeline.records import OsmObject


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

    def identity(self) -> dict[str, Any]:
        # Which mirror answers, its slots and timeouts, and the cache change nothing in the data.
        return {"kind": "overpass"}

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

__all__ = ["OverpassConfig", "OverpassSource", "normalise_endpoint"]
