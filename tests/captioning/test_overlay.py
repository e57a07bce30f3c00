"""The multi-object overlay on small synthetic geometries."""

from __future__ import annotations

import random

import pytest
import shapely
from shapely.geometry import LineString, Point, Polygon, box

from captioning.overlay import Overlay
from pipeline.errors import BadInputError
from pipeline.records import STATUS_FAILED, OsmObject

TILE = box(0.0, 0.0, 1.0, 1.0)


def way(osm_id: int, geom: object, **tags: str) -> OsmObject:
    return OsmObject("way", osm_id, dict(tags) or {"building": "yes"}, geom)  # type: ignore[arg-type]


def node(osm_id: int, x: float, y: float, **tags: str) -> OsmObject:
    return OsmObject("node", osm_id, dict(tags) or {"natural": "tree"}, Point(x, y))


@pytest.fixture
def scene() -> dict[str, OsmObject]:
    objs = {
        "me": way(1, box(0.4, 0.4, 0.6, 0.6), amenity="fountain"),
        "big": way(2, box(-1, -1, 0.5, 2)),  # half the tile inside
        "small": way(3, box(0.8, 0.8, 0.9, 0.9)),  # fully inside, 0.01
        "clipped": way(4, box(0.95, 0.0, 3.0, 0.5)),  # 0.05 x 0.5 inside = 0.025
        "road": way(5, LineString([(-1, 0.2), (2, 0.2)]), highway="footway"),  # length 1 inside
        "short": way(6, LineString([(0.1, 0.9), (0.3, 0.9)]), highway="service"),  # length 0.2
        "tree_b": node(8, 0.2, 0.2),
        "tree_a": node(7, 0.7, 0.3),
        "outside": way(9, box(2, 2, 3, 3)),
        "far_tree": node(10, 5, 5),
    }
    return objs


def keys(objs: list[OsmObject]) -> list[str]:
    return [o.key for o in objs]


def test_around_orders_polygons_lines_points_by_size_then_key(scene: dict[str, OsmObject]) -> None:
    ov = Overlay(scene.values())
    got = ov.around(scene["me"], TILE, 10)
    assert keys(got) == ["w2", "w4", "w3", "w5", "w6", "n7", "n8"]


def test_around_excludes_the_object_and_its_duplicates(scene: dict[str, OsmObject]) -> None:
    twin = OsmObject("way", 1, {"amenity": "fountain"}, box(0.0, 0.0, 1.0, 1.0))
    ov = Overlay([*scene.values(), twin])
    got = ov.around(scene["me"], TILE, 10)
    assert "w1" not in keys(got)
    assert len(got) == 7


def test_around_caps_and_handles_edges(scene: dict[str, OsmObject]) -> None:
    ov = Overlay(scene.values())
    assert keys(ov.around(scene["me"], TILE, 2)) == ["w2", "w4"]
    assert ov.around(scene["me"], TILE, 0) == []
    assert ov.around(scene["me"], box(10, 10, 11, 11), 5) == []
    assert ov.around(scene["me"], Polygon(), 5) == []
    with pytest.raises(BadInputError, match="max_n"):
        ov.around(scene["me"], TILE, -1)


def test_an_object_touching_the_tile_edge_counts() -> None:
    me = node(1, 0.5, 0.5)
    edge = way(2, box(1.0, 0.0, 2.0, 1.0))
    ov = Overlay([me, edge])
    assert keys(ov.around(me, TILE, 5)) == ["w2"]


def test_objects_without_geometry_are_left_out() -> None:
    me = node(1, 0.5, 0.5)
    failed = OsmObject("way", 2, {"building": "yes"}, None, status=STATUS_FAILED, error_message="broken ring")
    empty = OsmObject("way", 3, {"building": "yes"}, Polygon())
    ov = Overlay([me, failed, empty])
    assert len(ov) == 1
    assert ov.around(me, TILE, 5) == []
    assert Overlay([]).around(me, TILE, 5) == []


def test_invalid_polygon_does_not_fail_the_tile() -> None:
    bowtie = Polygon([(0.1, 0.1), (0.9, 0.9), (0.9, 0.1), (0.1, 0.9)])
    me = node(1, 0.5, 0.5)
    ov = Overlay([me, way(2, bowtie)])
    assert keys(ov.around(me, TILE, 5)) == ["w2"]


def test_order_does_not_depend_on_input_order(scene: dict[str, OsmObject]) -> None:
    objs = list(scene.values())
    expected = keys(Overlay(objs).around(scene["me"], TILE, 10))
    rng = random.Random(3)
    for _ in range(5):
        rng.shuffle(objs)
        assert keys(Overlay(objs).around(scene["me"], TILE, 10)) == expected


def test_matches_brute_force_on_random_scene() -> None:
    rng = random.Random(7)
    objs = []
    for i in range(400):
        x, y = rng.uniform(0, 10), rng.uniform(0, 10)
        if i % 2:
            objs.append(way(i, box(x, y, x + rng.uniform(0.01, 1), y + rng.uniform(0.01, 1))))
        else:
            objs.append(node(i, x, y))
    ov = Overlay(objs)
    for me in objs[:40]:
        c = me.geometry.centroid  # type: ignore[union-attr]
        tile = box(c.x - 1, c.y - 1, c.x + 1, c.y + 1)
        expected = {o.key for o in objs if o.key != me.key and shapely.intersects(o.geometry, tile)}
        assert set(keys(ov.around(me, tile, 10_000))) == expected
