"""Ground resolution and WGS84 footprints of rasters in any CRS.

Why ground metres: a Web-Mercator pixel of 0.0746 "metres" covers 0.0746·cos(lat) m on the
ground, and a 1e-4° pixel is ~11 m north–south but less east–west. Tag visibility and chip
planning compare GSDs across sources, so every GSD here is ground metres per pixel.
"""

from __future__ import annotations

import math
from functools import lru_cache

from affine import Affine
from pyproj import CRS as ProjCRS
from pyproj import Geod, Transformer
from rasterio.crs import CRS
from shapely.geometry import Polygon

WGS84 = "EPSG:4326"
_GEOD = Geod(ellps="WGS84")
EDGE_POINTS = 21  # points per edge when a footprint is densified (curved edges after reprojection)


@lru_cache(maxsize=256)
def transformer(src: str, dst: str) -> Transformer:
    """Cached lon/lat-ordered transformer between two CRS strings (WKT or authority codes)."""
    return Transformer.from_crs(src, dst, always_xy=True)


def crs_string(crs: CRS) -> str:
    """``EPSG:NNNN`` when the CRS has a code, else its WKT (both accepted by rasterio and pyproj)."""
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def _apply(t: Affine, col: float, row: float) -> tuple[float, float]:
    """Pixel → CRS coordinates, spelled out (affine's operator for this changed across versions)."""
    return (t.a * col + t.b * row + t.c, t.d * col + t.e * row + t.f)


def _is_mercator(crs: CRS) -> bool:
    """Normal-aspect Mercator (Web Mercator included): scale grows as 1/cos(lat)."""
    op = ProjCRS.from_wkt(crs.to_wkt()).coordinate_operation
    name = (op.method_name if op is not None else "").lower()
    return "mercator" in name and "transverse" not in name and "oblique" not in name


def ground_gsd(crs: CRS, transform: Affine, width: int, height: int) -> float:
    """Ground metres per pixel at the raster's centre (the coarser of the two axes)."""
    res_x = math.hypot(transform.a, transform.d)
    res_y = math.hypot(transform.b, transform.e)
    cx, cy = _apply(transform, width / 2.0, height / 2.0)
    src = crs_string(crs)
    if crs.is_geographic:
        # Measure one pixel step east and north on the ellipsoid; the coarser axis is the GSD.
        lon, lat = transformer(src, WGS84).transform(cx, cy)
        lon2, lat2 = transformer(src, WGS84).transform(cx + res_x, cy - res_y)
        gx = _GEOD.inv(lon, lat, lon2, lat)[2]
        gy = _GEOD.inv(lon, lat, lon, lat2)[2]
        return float(max(abs(gx), abs(gy)))
    _unit, factor = crs.linear_units_factor
    metres = max(res_x, res_y) * float(factor)
    if _is_mercator(crs):
        _lon, lat = transformer(src, WGS84).transform(cx, cy)
        metres *= math.cos(math.radians(lat))
    return float(metres)


def footprint_wgs84(crs: CRS, transform: Affine, width: int, height: int) -> Polygon:
    """The raster's outline in WGS84, edges densified so reprojected curvature is kept.

    Raises ``ValueError`` for a raster crossing the antimeridian.
    """
    n = EDGE_POINTS
    cols = [width * i / (n - 1) for i in range(n)]
    rows = [height * i / (n - 1) for i in range(n)]
    ring = (
        [(c, 0.0) for c in cols]
        + [(float(width), r) for r in rows[1:]]
        + [(c, float(height)) for c in reversed(cols[:-1])]
        + [(0.0, r) for r in reversed(rows[1:-1])]
    )
    xs, ys = zip(*(_apply(transform, c, r) for c, r in ring), strict=True)
    lons, lats = transformer(crs_string(crs), WGS84).transform(list(xs), list(ys))
    wraps = any(abs(a - b) > 180.0 for a, b in zip(lons, [*lons[1:], lons[0]], strict=True))
    if wraps or max(lons) > 180.0 + 1e-9 or min(lons) < -180.0 - 1e-9:
        # Its outline wraps from +180 to -180 (or runs past it): as one lon/lat polygon it would
        # span the globe or miss the objects on the far side.
        raise ValueError("the raster crosses the antimeridian (180°); split it into one file per side")
    poly = Polygon(zip(lons, lats, strict=True))
    return poly if poly.is_valid else poly.buffer(0)
