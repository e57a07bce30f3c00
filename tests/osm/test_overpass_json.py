"""Both Overpass response shapes (recursed nodes, inline ``out geom``) give the same objects."""

from __future__ import annotations

from typing import Any

from pipeline.osm.overpass import objects_from_elements
from tests.osm.conftest import expected_keys, synthetic_elements


def as_out_geom(elements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What ``out body geom;`` returns: tagged elements only, coordinates inline, no node list."""
    nodes = {e["id"]: e for e in elements if e["type"] == "node"}
    ways = {e["id"]: e for e in elements if e["type"] == "way"}
    out = []
    for e in elements:
        if not e.get("tags"):
            continue
        e = dict(e)
        if e["type"] == "way":
            e["geometry"] = [{"lat": nodes[n]["lat"], "lon": nodes[n]["lon"]} for n in e["nodes"]]
        elif e["type"] == "relation":
            e["members"] = [
                {**m, "geometry": [{"lat": nodes[n]["lat"], "lon": nodes[n]["lon"]} for n in ways[m["ref"]]["nodes"]]}
                for m in e["members"]
            ]
        out.append(e)
    return out


def test_out_geom_and_recursed_responses_agree() -> None:
    elements = synthetic_elements(n=3)
    recursed = {o.key: o for o in objects_from_elements(list(reversed(elements)), "recursed")}
    inline = {o.key: o for o in objects_from_elements(as_out_geom(elements), "inline")}
    assert set(recursed) == set(inline) == expected_keys(elements)
    for k, o in recursed.items():
        assert o.tags == inline[k].tags and o.geometry.equals_exact(inline[k].geometry, 1e-7), k


def test_way_with_missing_nodes_in_a_response_is_a_failed_row() -> None:
    elements = [
        {"type": "node", "id": 1, "lat": 60.0, "lon": 24.0},
        {"type": "way", "id": 5, "nodes": [1, 2, 3], "tags": {"highway": "path"}},
        {
            "type": "relation",
            "id": 9,
            "members": [{"type": "way", "ref": 77, "role": "outer"}],
            "tags": {"type": "multipolygon", "landuse": "meadow"},
        },
    ]
    objs = {o.key: o for o in objects_from_elements(elements, "broken")}
    assert objs["w5"].status == "failed" and "2 of 3 nodes missing" in objs["w5"].error_message
    assert objs["r9"].status == "failed" and "could not be assembled" in objs["r9"].error_message
