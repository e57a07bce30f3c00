"""One streaming pyosmium pass turning OSM data into :class:`OsmObject` records.

Used by the file source, the one-pass plan source and (through an in-memory OSM XML
buffer) the Overpass source, so every source assembles geometry the same way:
nodes → Point, ways → LineString or Polygon (closed ways with area tags), multipolygon and
boundary relations → MultiPolygon via osmium's area assembler.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import osmium
import shapely

from pipeline.config import OsmConfig
from pipeline.errors import InputFileError, SkyScriptError
from pipeline.osm.geometry import GeometryFailure, as_multipolygon, repair_polygonal, way_geometry
from pipeline.osm.idset import IdSet
from pipeline.osm.select import Selector, bbox_of_points
from pipeline.osm.tags import AREA_RELATION_TYPES, has_interesting_tags, is_area
from pipeline.records import STATUS_FAILED, OsmObject

OsmInput = str | os.PathLike[str] | osmium.io.FileBuffer

RELATION_FAILED = (
    "multipolygon could not be assembled: member ways or their nodes are missing from the input "
    "(clipped extract?) or the rings do not close"
)


def failed(osm_type: str, osm_id: int, tags: dict[str, str], reason: str) -> OsmObject:
    return OsmObject(osm_type, osm_id, tags, None, status=STATUS_FAILED, error_message=reason)  # type: ignore[arg-type]


class _Pass:
    """State of one pass: config, selector and the relation bookkeeping."""

    def __init__(self, cfg: OsmConfig, selector: Selector) -> None:
        self.skip = frozenset(cfg.uninteresting_keys)
        self.selector = selector
        self.relations_seen = IdSet()  # area relations with interesting tags
        self.relations_built = IdSet()  # ... for which osmium produced an area
        self.wkb = osmium.geom.WKBFactory()

    def node(self, o: Any) -> OsmObject | None:
        loc = o.location
        tags = dict(o.tags)
        if not has_interesting_tags(tags, self.skip):
            return None
        if not loc.valid():
            return (
                failed("node", o.id, tags, f"node {o.id} has an invalid location")
                if (self.selector.unlocated(tags))
                else None
            )
        if not self.selector.point(loc.lon, loc.lat, tags):
            return None
        return OsmObject("node", o.id, tags, shapely.Point(loc.lon, loc.lat))

    def way(self, o: Any) -> OsmObject | None:
        tags = dict(o.tags)
        if not has_interesting_tags(tags, self.skip):
            return None
        try:  # osmium builds the line in C++: much faster than walking nodes in Python
            line = shapely.from_wkb(self.wkb.create_linestring(o, osmium.geom.use_nodes.ALL))
        except osmium.InvalidLocationError:
            return self._partial_way(o, tags)
        except RuntimeError as exc:  # fewer than two nodes
            reason = f"way {o.id} has fewer than 2 nodes ({exc})"
            return failed("way", o.id, tags, reason) if self.selector.unlocated(tags) else None
        if not self.selector.maybe(line.bounds, tags):
            return None
        closed = o.is_closed() and len(o.nodes) >= 4
        try:
            geom = way_geometry(line, closed and is_area(tags), f"way {o.id}")
        except GeometryFailure as exc:
            return failed("way", o.id, tags, str(exc)) if self.selector.unlocated(tags) else None
        return OsmObject("way", o.id, tags, geom) if self.selector.geometry(geom, tags) else None

    def _partial_way(self, o: Any, tags: dict[str, str]) -> OsmObject | None:
        """A way whose nodes are partly missing (clipped extract, broken data): a failed row."""
        coords = [(n.lon, n.lat) for n in o.nodes if n.location.valid()]
        total = len(o.nodes)
        keep = self.selector.maybe(bbox_of_points(coords), tags) if coords else self.selector.unlocated(tags)
        reason = f"way {o.id} references {total - len(coords)} of {total} nodes missing from the input"
        if any(n.ref < 0 for n in o.nodes):  # osmium's location index keeps positive ids only
            reason += "; negative (unsaved) node ids are not supported: renumber with `osmium renumber`"
        else:
            reason += " (clipped extract?)"
        return failed("way", o.id, tags, reason) if keep else None

    def relation(self, o: Any) -> None:
        tags = o.tags
        if tags.get("type") in AREA_RELATION_TYPES and has_interesting_tags(dict(tags), self.skip, relation=True):
            self.relations_seen.add(o.id)

    def area(self, o: Any) -> OsmObject | None:
        if o.from_way():
            return None  # closed ways are handled by way() with our own area rules
        rel_id = o.orig_id()
        self.relations_built.add(rel_id)
        tags = dict(o.tags)  # osmium drops the structural ``type`` tag
        if not has_interesting_tags(tags, self.skip, relation=True):
            return None
        try:
            geom = shapely.from_wkb(self.wkb.create_multipolygon(o))  # hex WKB
            geom = as_multipolygon(repair_polygonal(geom, f"relation {rel_id}"))
        except (RuntimeError, osmium.InvalidLocationError, GeometryFailure, shapely.errors.GEOSException) as exc:
            reason = str(exc) if isinstance(exc, GeometryFailure) else f"relation {rel_id}: {RELATION_FAILED}"
            return failed("relation", rel_id, tags, reason) if self.selector.unlocated(tags) else None
        if not self.selector.maybe(geom.bounds, tags) or not self.selector.geometry(geom, tags):
            return None
        return OsmObject("relation", rel_id, tags, geom)


def iter_osm(
    indata: OsmInput,
    label: str,
    cfg: OsmConfig | None = None,
    selector: Selector | None = None,
    index: str = "flex_mem",
    error: type[SkyScriptError] = InputFileError,
) -> Iterator[OsmObject]:
    """Stream the objects of ``indata``; ``label`` names it in errors (a path or a query)."""
    from pipeline.osm.select import SelectAll

    state = _Pass(cfg or OsmConfig(), selector or SelectAll())
    processor = osmium.FileProcessor(indata).with_locations(index).with_areas()
    processor.with_filter(osmium.filter.EmptyTagFilter())
    handlers = {"n": state.node, "w": state.way, "a": state.area}
    try:
        for o in processor:
            kind = o.type_str()
            if kind == "r":
                state.relation(o)
                continue
            obj = handlers[kind](o)
            if obj is not None:
                yield obj
    except RuntimeError as exc:
        if isinstance(exc, SkyScriptError):
            raise
        raise error(f"{label} is not readable OSM data (malformed or truncated file?): {exc}") from exc
    yield from _failed_relations(indata, label, state, error)


def _failed_relations(indata: OsmInput, label: str, state: _Pass, error: type[SkyScriptError]) -> Iterator[OsmObject]:
    """Rows for area relations osmium could not assemble (one extra pass over relations only)."""
    missing = state.relations_seen.difference(state.relations_built)
    if not missing:
        return
    wanted = set(missing)
    # A small single-thread pool: this pass runs while the main pass's buffers may still be held.
    pool = osmium.io.ThreadPool(1, 2)
    reader = osmium.FileProcessor(indata, osmium.osm.RELATION, pool).with_filter(osmium.filter.IdFilter(missing))
    try:
        for o in reader:
            if o.id in wanted:
                tags = {k: v for k, v in dict(o.tags).items() if k != "type"}
                if state.selector.unlocated(tags):
                    yield failed("relation", o.id, tags, f"relation {o.id}: {RELATION_FAILED}")
    except RuntimeError as exc:
        raise error(f"{label} is not readable OSM data: {exc}") from exc
