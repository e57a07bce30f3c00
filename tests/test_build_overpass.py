"""``build --source overpass:URL`` against the loopback Overpass fixture gives the file build's samples."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from pipeline.build import BuildInputs, build
from pipeline.config import load_config
from pipeline.geo import BBox
from storage import shards as sh
from tests.fakes import make_fake_area
from tests.osm.overpass_server import OverpassFixture


def osm_xml_to_elements(path: Path) -> list[dict[str, Any]]:
    """Overpass JSON elements from an OSM XML file (independent of the toolkit's readers)."""
    out: list[dict[str, Any]] = []
    for el in ET.parse(path).getroot():
        tags = {t.get("k"): t.get("v") for t in el.findall("tag")}
        if el.tag == "node":
            out.append({"type": "node", "id": int(el.get("id")), "lat": float(el.get("lat")),
                        "lon": float(el.get("lon")), **({"tags": tags} if tags else {})})
        elif el.tag == "way":
            out.append({"type": "way", "id": int(el.get("id")),
                        "nodes": [int(n.get("ref")) for n in el.findall("nd")], **({"tags": tags} if tags else {})})
    return out


def test_overpass_build_matches_file_build(tmp_path: Path) -> None:
    area = make_fake_area(tmp_path / "area", seed=4)
    base = load_config(preset="tiny")
    ov = dataclasses.replace(base.osm.overpass, cache_dir=str(tmp_path / "cache"), slot_dir=str(tmp_path / "slots"),
                             socket_timeout_s=5.0, backoff_s=0.01, max_backoff_s=0.05)
    cfg = base.replace(osm=dataclasses.replace(base.osm, overpass=ov))
    # A margin around the area: Overpass is asked for a bbox, the file is read whole.
    w, s, e, n = area.bbox
    box = BBox(w - 0.001, s - 0.001, e + 0.001, n + 0.001)
    imagery = f"local:{area.imagery_dir}"
    quiet = lambda _m: None  # noqa: E731
    build(BuildInputs(str(area.osm), imagery, str(tmp_path / "file"), bbox=box), cfg, log=quiet)
    with OverpassFixture(osm_xml_to_elements(area.osm)) as fx:
        build(BuildInputs(f"overpass:{fx.endpoint}", imagery, str(tmp_path / "ovp"), bbox=box), cfg, log=quiet)
    a = {s["key"]: s for s in sh.iter_samples(tmp_path / "file" / "shards")}
    b = {s["key"]: s for s in sh.iter_samples(tmp_path / "ovp" / "shards")}
    assert a and a.keys() == b.keys()
    for k in a:
        assert a[k]["json"]["caption_multi"] == b[k]["json"]["caption_multi"]
        assert a[k]["json"]["bbox"] == b[k]["json"]["bbox"]
        assert a[k]["jpg"] == b[k]["jpg"]
