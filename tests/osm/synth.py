"""Tiny synthetic OSM data written by the tests themselves (no ../shared needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from xml.sax.saxutils import quoteattr


def _tags(tags: Mapping[str, str]) -> str:
    return "".join(f"<tag k={quoteattr(k)} v={quoteattr(v)}/>" for k, v in tags.items())


def osm_xml(
    nodes: Sequence[tuple[int, float, float, Mapping[str, str]]],
    ways: Sequence[tuple[int, Sequence[int], Mapping[str, str]]] = (),
    relations: Sequence[tuple[int, Sequence[tuple[str, int, str]], Mapping[str, str]]] = (),
) -> str:
    """OSM XML text: nodes (id, lon, lat, tags), ways (id, refs, tags), relations (id, members, tags)."""
    out = ["<?xml version='1.0' encoding='UTF-8'?>", '<osm version="0.6" generator="tests">']
    for nid, lon, lat, tags in nodes:
        out.append(f'<node id="{nid}" version="1" lat="{lat}" lon="{lon}">{_tags(tags)}</node>')
    for wid, refs, tags in ways:
        nds = "".join(f'<nd ref="{r}"/>' for r in refs)
        out.append(f'<way id="{wid}" version="1">{nds}{_tags(tags)}</way>')
    for rid, members, tags in relations:
        mem = "".join(f'<member type="{t}" ref="{r}" role="{role}"/>' for t, r, role in members)
        out.append(f'<relation id="{rid}" version="1">{mem}{_tags(tags)}</relation>')
    out.append("</osm>")
    return "\n".join(out)


def square(first_id: int, x0: float, y0: float, size: float) -> list[tuple[int, float, float, dict]]:
    """Four untagged corner nodes of an axis-aligned square, counter-clockwise."""
    pts = [(x0, y0), (x0 + size, y0), (x0 + size, y0 + size), (x0, y0 + size)]
    return [(first_id + i, x, y, {}) for i, (x, y) in enumerate(pts)]


def sample_world() -> str:
    """A small world exercising every rule: areas, lines, repairs, failures, skips."""
    nodes = [
        (1, 10.0, 50.0, {"amenity": "bench"}),
        (2, 10.1, 50.1, {}),  # untagged: skipped
        (3, 10.2, 50.2, {"source": "survey", "created_by": "JOSM"}),  # uninteresting: skipped
        *square(10, 10.0, 50.0, 0.01),  # building way 100
        *square(20, 10.02, 50.0, 0.01),  # closed highway way 101
        *square(30, 10.04, 50.0, 0.01),  # area=yes highway 102
        *square(40, 10.06, 50.0, 0.01),  # coastline 103
        (50, 11.0, 51.0, {}),
        (51, 11.01, 51.01, {}),
        (52, 11.01, 51.0, {}),
        (53, 11.0, 51.01, {}),  # bowtie
        *square(60, 12.0, 52.0, 0.1),  # outer ring (relation 300)
        *square(70, 12.03, 52.03, 0.02),  # inner ring
        (80, 13.0, 53.0, {}),
        (81, 13.01, 53.0, {}),
    ]
    ways = [
        (100, [10, 11, 12, 13, 10], {"building": "yes"}),
        (101, [20, 21, 22, 23, 20], {"highway": "residential"}),
        (102, [30, 31, 32, 33, 30], {"highway": "pedestrian", "area": "yes"}),
        (103, [40, 41, 42, 43, 40], {"natural": "coastline"}),
        (104, [50, 51, 52, 53, 50], {"landuse": "grass"}),  # self-intersecting: repaired
        (105, [80, 81, 9999], {"highway": "track"}),  # missing node: failed row
        (106, [80, 81], {"note": "check this"}),  # uninteresting: skipped
        (107, [60, 61, 62, 63, 60], {}),
        (108, [70, 71, 72, 73, 70], {}),
        (109, [80, 80], {"barrier": "fence"}),  # one distinct location: failed row
    ]
    relations = [
        (300, [("way", 107, "outer"), ("way", 108, "inner")], {"type": "multipolygon", "landuse": "forest"}),
        (301, [("way", 8888, "outer")], {"type": "multipolygon", "natural": "water"}),  # broken
        (302, [("way", 101, "")], {"type": "route", "route": "bus"}),  # not an area: skipped
        (303, [("way", 107, "outer")], {"type": "multipolygon"}),  # only type: skipped
    ]
    return osm_xml(nodes, ways, relations)


def write_sample(dir_: Path, name: str = "sample.osm") -> Path:
    path = dir_ / name
    text = sample_world()
    if name.endswith(".bz2"):
        import bz2

        path.write_bytes(bz2.compress(text.encode()))
    elif name.endswith(".gz"):
        import gzip

        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path
