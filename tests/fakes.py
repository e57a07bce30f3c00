"""Tiny seeded fake data: an OSM XML file and a Web-Mercator GeoTIFF showing its buildings.

Real enough to drive the whole build offline: closed building ways, a footway, POI nodes,
a name-only node (not visible), all inside a raster whose pixels draw the buildings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.features import rasterize
from rasterio.transform import from_origin
from shapely.geometry import Polygon

LON0, LAT0 = 32.5800, 0.3200  # Kampala-ish: near the equator Web Mercator metres ≈ ground metres


@dataclass
class FakeArea:
    osm: Path
    imagery_dir: Path
    raster: Path
    building_ids: list[int]
    bbox: tuple[float, float, float, float]


def _xml_tags(tags: dict[str, str]) -> str:
    return "".join(f"<tag k={quoteattr(k)} v={quoteattr(v)}/>" for k, v in tags.items())


def make_fake_area(root: Path, seed: int = 0, n_buildings: int = 12, size_m: float = 160.0) -> FakeArea:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    to_merc = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    to_wgs = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True)
    x0, y0 = to_merc.transform(LON0, LAT0)
    gsd = 0.3
    px = int(size_m / gsd)

    nodes: list[str] = []
    ways: list[str] = []
    next_node = [1]

    def node(x: float, y: float, tags: dict[str, str] | None = None) -> int:
        lon, lat = to_wgs.transform(x, y)
        nid = next_node[0]
        next_node[0] += 1
        inner = _xml_tags(tags or {})
        nodes.append(f'<node id="{nid}" version="1" lat="{lat:.8f}" lon="{lon:.8f}">{inner}</node>')
        return nid

    polys: list[Polygon] = []
    building_ids = []
    margin = 25.0
    for b in range(n_buildings):
        for _ in range(50):  # rejection-sample non-overlapping footprints
            w, h = rng.uniform(6, 14, size=2)
            cx, cy = x0 + rng.uniform(margin, size_m - margin), y0 - rng.uniform(margin, size_m - margin)
            poly = Polygon([(cx - w / 2, cy - h / 2), (cx + w / 2, cy - h / 2),
                            (cx + w / 2, cy + h / 2), (cx - w / 2, cy + h / 2)])
            if all(not poly.buffer(2).intersects(p) for p in polys):
                break
        polys.append(poly)
        refs = [node(x, y) for x, y in list(poly.exterior.coords)[:-1]]
        refs.append(refs[0])
        wid = 1000 + b
        building_ids.append(wid)
        tags = {"building": "house" if b % 3 else "yes", "name": f"House {b}"}
        nd = "".join(f'<nd ref="{r}"/>' for r in refs)
        ways.append(f'<way id="{wid}" version="1">{nd}{_xml_tags(tags)}</way>')
    # A footway across the area, two POIs, one node with only a name (never a sample).
    fw = [node(x0 + 5 + i * (size_m - 10) / 5, y0 - size_m / 2 + (i % 2) * 3) for i in range(6)]
    fw_refs = "".join(f'<nd ref="{r}"/>' for r in fw)
    ways.append(f'<way id="2000" version="1">{fw_refs}{_xml_tags({"highway": "footway"})}</way>')
    node(x0 + size_m / 2, y0 - size_m / 2 + 8, {"amenity": "fountain"})
    node(x0 + size_m / 2 + 6, y0 - size_m / 2 + 8, {"natural": "tree"})
    node(x0 + 30, y0 - 30, {"name": "Somewhere", "addr:street": "Main Road"})

    osm = root / "area.osm"
    osm.write_text(
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        '<osm version="0.6" generator="skyscript-tests">\n' + "\n".join(nodes + ways) + "\n</osm>\n"
    )

    img_dir = root / "imagery"
    img_dir.mkdir(exist_ok=True)
    transform = from_origin(x0, y0, gsd, gsd)
    base = rng.integers(60, 120, size=(3, px, px), dtype=np.uint8)  # "ground"
    roofs = rasterize([(p, 1) for p in polys], out_shape=(px, px), transform=transform)
    base[0][roofs == 1] = 200
    base[1][roofs == 1] = 60
    base[2][roofs == 1] = 50
    raster = img_dir / "ortho.tif"
    with rasterio.open(raster, "w", driver="GTiff", width=px, height=px, count=3, dtype="uint8",
                       crs="EPSG:3857", transform=transform, tiled=True, blockxsize=256,
                       blockysize=256, photometric="RGB") as dst:
        dst.write(base)
    lon_w, lat_n = to_wgs.transform(x0, y0)
    lon_e, lat_s = to_wgs.transform(x0 + size_m, y0 - size_m)
    return FakeArea(osm, img_dir, raster, building_ids, (lon_w, lat_s, lon_e, lat_n))
