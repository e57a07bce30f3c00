"""Overpass JSON → OSM XML bytes that pyosmium reads from memory.

Handles both response shapes: recursed (``out body; >; out skel qt;``: separate node
elements) and inline geometry (``out body geom;``: coordinates on ways and relation members,
for which node ids are synthesised, shared by equal coordinates so rings close).
Elements are de-duplicated and sorted nodes, ways, relations as osmium expects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from xml.sax.saxutils import quoteattr

_ORDER = {"node": 0, "way": 1, "relation": 2}
# Synthetic node ids: positive (osmium's location index ignores negative ids) and far above
# any real OSM id (~1.3e10), so they never collide with nodes of the response.
_SYNTHETIC_BASE = 1 << 60


class _Builder:
    def __init__(self) -> None:
        self.nodes: dict[int, tuple[float, float, dict[str, str]]] = {}
        self.ways: dict[int, tuple[list[int], dict[str, str]]] = {}
        self.relations: dict[int, tuple[list[tuple[str, int, str]], dict[str, str]]] = {}
        self._synthetic: dict[tuple[float, float], int] = {}

    def node_for(self, lon: float, lat: float) -> int:
        key = (lon, lat)
        nid = self._synthetic.get(key)
        if nid is None:
            nid = _SYNTHETIC_BASE + len(self._synthetic)
            self._synthetic[key] = nid
            self.nodes[nid] = (lon, lat, {})
        return nid

    def add(self, el: Mapping[str, Any]) -> None:
        kind, eid, tags = el.get("type"), int(el["id"]), dict(el.get("tags") or {})
        if kind == "node" and "lat" in el:
            old = self.nodes.get(eid)
            self.nodes[eid] = (float(el["lon"]), float(el["lat"]), tags or (old[2] if old else {}))
        elif kind == "way":
            self._add_way(eid, el, tags)
        elif kind == "relation":
            self._add_relation(eid, el, tags)

    def _add_way(self, eid: int, el: Mapping[str, Any], tags: dict[str, str]) -> None:
        refs = [int(r) for r in el.get("nodes") or []]
        geometry = el.get("geometry")
        if geometry and len(geometry) == len(refs):
            for ref, pt in zip(refs, geometry, strict=True):
                if pt is not None and ref not in self.nodes:
                    self.nodes[ref] = (float(pt["lon"]), float(pt["lat"]), {})
        old = self.ways.get(eid)
        self.ways[eid] = (refs or (old[0] if old else []), tags or (old[1] if old else {}))

    def _add_relation(self, eid: int, el: Mapping[str, Any], tags: dict[str, str]) -> None:
        members = []
        for m in el.get("members") or []:
            mtype, ref, role = m.get("type"), int(m.get("ref", 0)), str(m.get("role", ""))
            if mtype == "way" and m.get("geometry") and ref not in self.ways:
                pts = [p for p in m["geometry"] if p is not None]
                self.ways[ref] = ([self.node_for(float(p["lon"]), float(p["lat"])) for p in pts], {})
            elif mtype == "node" and "lat" in m and ref not in self.nodes:
                self.nodes[ref] = (float(m["lon"]), float(m["lat"]), {})
            members.append((mtype, ref, role))
        old = self.relations.get(eid)
        self.relations[eid] = (members or (old[0] if old else []), tags or (old[1] if old else {}))

    def xml(self) -> bytes:
        out = ["<?xml version='1.0' encoding='UTF-8'?>", '<osm version="0.6" generator="skyscript">']
        for nid in sorted(self.nodes):
            lon, lat, tags = self.nodes[nid]
            out.append(f'<node id="{nid}" version="1" lat="{lat!r}" lon="{lon!r}">{_tags(tags)}</node>')
        for wid in sorted(self.ways):
            refs, tags = self.ways[wid]
            nds = "".join(f'<nd ref="{r}"/>' for r in refs)
            out.append(f'<way id="{wid}" version="1">{nds}{_tags(tags)}</way>')
        for rid in sorted(self.relations):
            members, tags = self.relations[rid]
            mem = "".join(f'<member type={quoteattr(t)} ref="{r}" role={quoteattr(ro)}/>' for t, r, ro in members)
            out.append(f'<relation id="{rid}" version="1">{mem}{_tags(tags)}</relation>')
        out.append("</osm>")
        return "\n".join(out).encode("utf-8")


def _tags(tags: Mapping[str, str]) -> str:
    return "".join(f"<tag k={quoteattr(str(k))} v={quoteattr(str(v))}/>" for k, v in tags.items())


def elements_to_osm_xml(elements: Iterable[Mapping[str, Any]]) -> bytes:
    """OSM XML for Overpass JSON ``elements`` (any order, duplicates allowed)."""
    builder = _Builder()
    for el in sorted(elements, key=lambda e: _ORDER.get(str(e.get("type")), 3)):
        builder.add(el)
    return builder.xml()
