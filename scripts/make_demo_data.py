"""Derive the small bundled sample that ``make demo`` builds (run once by a maintainer).

From ``../shared/data/imagery/oam`` (real OpenAerialMap orthophotos over Kampala, area 2, and the
real OSM building footprints over them): both area-2 blocks at zoom 21 (0.075 m) rewritten as
JPEG-compressed COGs with internal overviews and a valid-data mask, and the OSM ways whose every
node lies inside one of the blocks, as OSM XML. Writes ``pipeline/demo_data/``.

    .venv/bin/python scripts/make_demo_data.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import rasterio
from rasterio.shutil import copy as rio_copy

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT.parent / "shared" / "data" / "imagery" / "oam"
DEST = ROOT / "pipeline" / "demo_data"
BLOCKS = ("area2_block0_z21.tif", "area2_block1_z21.tif")


def main() -> int:
    if not SRC.is_dir():
        print(f"source data not found at {SRC}", file=sys.stderr)
        return 2
    DEST.mkdir(parents=True, exist_ok=True)
    boxes = []
    for name in BLOCKS:
        out = DEST / name.replace(".tif", "_cog.tif")
        rio_copy(SRC / name, out, driver="COG", COMPRESS="JPEG", QUALITY="85", OVERVIEWS="AUTO",
                 BLOCKSIZE="256")
        with rasterio.open(out) as ds:
            print(f"{out.name}: {ds.width}x{ds.height} {ds.crs} {out.stat().st_size / 1e6:.2f} MB")
        boxes += [m["wgs84_bbox"] for m in json.loads((SRC / "area2_mosaics.json").read_text()) if m["file"] == name]
    xml = (SRC / "area2_buildings.osm").read_text(encoding="utf-8")
    nodes = {m.group(1): (float(m.group(3)), float(m.group(2)))
             for m in re.finditer(r'<node id="(\d+)"[^>]*lat="([-\d.]+)" lon="([-\d.]+)"', xml)}

    def inside(lon: float, lat: float) -> bool:
        return any(w <= lon <= e and s <= lat <= n for w, s, e, n in boxes)

    ways = []
    for m in re.finditer(r"<way .*?</way>", xml, flags=re.S):
        refs = re.findall(r'<nd ref="(\d+)"/>', m.group(0))
        if refs and all(r in nodes and inside(*nodes[r]) for r in refs):
            ways.append((m.group(0), refs))
    keep = {r for _, refs in ways for r in refs}
    node_xml = [m.group(0) for m in re.finditer(r"<node [^>]*?(?:/>|>.*?</node>)", xml, flags=re.S)
                if re.search(r'id="(\d+)"', m.group(0)).group(1) in keep]  # type: ignore[union-attr]
    body = "\n".join(node_xml + [w for w, _ in ways])
    (DEST / "kampala_buildings.osm").write_text(
        "<?xml version='1.0' encoding='UTF-8'?>\n<osm version=\"0.6\" generator=\"skyscript demo sample\">\n"
        f"{body}\n</osm>\n", encoding="utf-8")
    print(f"kampala_buildings.osm: {len(ways)} buildings, {len(keep)} nodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
