"""Overpass source on real recorded responses (../shared/data/overpass) and the PBF identity."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import osmium
import pytest
from osmium.osm.mutable import Node, Relation, Way

from pipeline.geo import BBox
from pipeline.osm import make_osm_source
from pipeline.osm.overpass import OverpassConfig, OverpassSource
from pipeline.osm.overpass_ql import build_query, split_bbox
from pipeline.records import OsmObject
from tests.osm.conftest import expected_keys, load_recorded, short_sleep, synthetic_elements
from tests.osm.overpass_server import OverpassFixture


def extent(elements: list[dict[str, Any]]) -> BBox:
    lons = [e["lon"] for e in elements if e["type"] == "node"]
    lats = [e["lat"] for e in elements if e["type"] == "node"]
    return BBox(min(lons) - 1e-4, min(lats) - 1e-4, max(lons) + 1e-4, max(lats) + 1e-4)


def write_pbf(elements: list[dict[str, Any]], path: Path) -> Path:
    """The same data as an .osm.pbf, written by osmium itself (independent of our converter)."""
    order = {"node": 0, "way": 1, "relation": 2}
    uniq = {(e["type"], e["id"]): e for e in sorted(elements, key=lambda e: bool(e.get("tags")))}
    with osmium.SimpleWriter(str(path)) as writer:
        for (kind, eid), e in sorted(uniq.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
            tags = e.get("tags") or {}
            if kind == "node":
                writer.add_node(Node(id=eid, location=(e["lon"], e["lat"]), tags=tags, version=1))
            elif kind == "way":
                writer.add_way(Way(id=eid, nodes=e["nodes"], tags=tags, version=1))
            else:
                members = [(m["type"][0], m["ref"], m["role"]) for m in e["members"]]
                writer.add_relation(Relation(id=eid, members=members, tags=tags, version=1))
    return path


def overpass(cfg: OverpassConfig, fx: OverpassFixture) -> OverpassSource:
    return OverpassSource(cfg.with_endpoints([fx.endpoint]), sleep=short_sleep, rng=random.Random(3))


def assert_same_objects(a: list[OsmObject], b: list[OsmObject]) -> None:
    ka, kb = {o.key: o for o in a}, {o.key: o for o in b}
    assert set(ka) == set(kb)
    for key, x in ka.items():
        y = kb[key]
        assert (x.osm_type, x.osm_id, x.tags, x.status) == (y.osm_type, y.osm_id, y.tags, y.status), key
        if x.geometry is not None:
            assert x.geometry.geom_type == y.geometry.geom_type, key
            assert x.geometry.equals_exact(y.geometry, 1e-7), key


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_recorded_response_every_element_out_despite_faults(
    shared_data: Path, fast_config: OverpassConfig, n: int
) -> None:
    elements = load_recorded(shared_data, n)
    with OverpassFixture(elements) as fx:
        fx.state.faults = ["429", "504", "remark", "truncated", "html", "hang"]
        fx.state.hang_s = 2.0
        src = overpass(fast_config, fx)
        cells = split_bbox(extent(elements), max(0.01, (extent(elements).east - extent(elements).west) / 3))
        objs = list(src.run_queries([build_query(c) for c in cells]))
        assert fx.state.violations == 0 and fx.state.counts["hang"] == 1
    keys = [o.key for o in objs]
    assert len(keys) == len(set(keys))  # objects spanning cells come out once
    assert set(keys) == expected_keys(elements)
    assert all(o.ok or o.error_message for o in objs)
    assert sum(o.ok for o in objs) >= 0.99 * len(objs)


def test_pbf_and_overpass_give_the_same_objects(shared_data: Path, fast_config: OverpassConfig, tmp_path: Path) -> None:
    elements = load_recorded(shared_data, 2)  # buildings, and multipolygons with holes
    pbf = write_pbf(elements, tmp_path / "same.osm.pbf")
    box = extent(elements)
    from_file = list(make_osm_source(f"pbf:{pbf}").objects(box))
    with OverpassFixture(elements) as fx:
        from_overpass = list(overpass(fast_config.replace(max_query_deg=1.0), fx).objects(box))
    assert len(from_file) == len(expected_keys(elements))
    assert {o.geometry.geom_type for o in from_file if o.ok} >= {"Polygon", "MultiPolygon"}
    assert_same_objects(from_file, from_overpass)


def test_pbf_and_overpass_identity_on_synthetic_data(fast_config: OverpassConfig, tmp_path: Path) -> None:
    elements = synthetic_elements()
    pbf = write_pbf(elements, tmp_path / "syn.osm.pbf")
    box = extent(elements)
    with OverpassFixture(elements) as fx:
        from_overpass = list(overpass(fast_config, fx).objects(box))
    from_file = list(make_osm_source(str(pbf)).objects(box))
    assert len(from_file) == len(expected_keys(elements))
    assert_same_objects(from_file, from_overpass)


def test_recorded_status_reply(shared_data: Path, fast_config: OverpassConfig) -> None:
    from pipeline.osm.overpass_client import status_wait_seconds

    text = (shared_data / "overpass" / "status-response.txt").read_text()
    assert status_wait_seconds(text) == 0  # "3 slots available now."
    elements = synthetic_elements(n=2)
    with OverpassFixture(elements, status_text=text) as fx:
        objs = list(overpass(fast_config, fx).objects(extent(elements)))
        assert fx.state.counts["status"] >= 1
    assert {o.key for o in objs} == expected_keys(elements)
