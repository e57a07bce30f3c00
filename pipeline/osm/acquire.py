"""Run an acquisition :class:`Plan` against any OSM source, streaming objects."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from pipeline.osm.filesource import FileOsmSource, TableOsmSource
from pipeline.osm.overpass import OverpassSource
from pipeline.osm.plan import Plan, PlanSelector
from pipeline.osm.reader import iter_osm
from pipeline.records import OsmObject
from pipeline.seams import OsmSource


def count_queries(source: OsmSource, plan: Plan) -> int | None:
    """How many requests an Overpass run makes (None for file sources: one pass)."""
    if isinstance(source, OverpassSource):
        o = source.overpass
        return sum(1 for _ in plan.overpass_queries(o.limits, o.max_query_deg))
    return None


def acquire(source: OsmSource, plan: Plan, on_step: Callable[[str], None] | None = None) -> Iterator[OsmObject]:
    """Objects the plan selects. Files: ONE streaming pass for the whole plan. Overpass: one
    request per cell / (tag, tile), concurrent within the slot limit; failed requests are
    kept in ``source.failures`` while the run goes on."""
    selector = PlanSelector(plan)
    if isinstance(source, FileOsmSource):
        yield from iter_osm(str(source.path), repr(str(source.path)), source.config, selector, source.index)
        return
    if isinstance(source, OverpassSource):
        o = source.overpass
        queries = plan.overpass_queries(o.limits, o.max_query_deg)
        yield from source.run_queries(queries, selector, keep_going=True, on_done=on_step)
        return
    objs = source.objects(plan.bbox) if not isinstance(source, TableOsmSource) else source.objects()
    for obj in objs:
        if obj.geometry is None:
            if selector.unlocated(obj.tags):
                yield obj
        elif selector.maybe(obj.geometry.bounds, obj.tags) and selector.geometry(obj.geometry, obj.tags):
            yield obj
