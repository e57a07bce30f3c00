"""Where a raster has data: its valid-data outline, so planning keeps tiles off nodata areas.

The bounding box of a mosaic or a scene cut at an angle is mostly not imagery. The outline is
read from a decimated copy of the raster (at most ``MASK_PX`` on the long side: overviews make
that cheap for COGs), where a pixel is empty when masked (nodata, alpha, internal mask), not
finite, or zero in every band (undeclared black fill, the usual way mosaics pad). The outline is
shrunk by one decimated pixel, since a decimated pixel is a sample, not a guarantee, for the pixels
it stands for; what remains is checked per chip anyway (``imagery.max_nodata_frac``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely
from affine import Affine
from rasterio.enums import MaskFlags, Resampling
from rasterio.features import shapes
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from pipeline.imagery.georef import WGS84, crs_string, transformer

MASK_PX = 512
SIMPLIFY_PX = 1.0  # outline simplification tolerance, in decimated pixels


def valid_mask(ds: Any, bands: list[int], max_px: int = MASK_PX) -> tuple[np.ndarray, Affine]:
    """(bool valid per decimated pixel, the decimated grid's transform)."""
    factor = max(1.0, max(ds.width, ds.height) / max_px)
    h, w = max(1, round(ds.height / factor)), max(1, round(ds.width / factor))
    arr = ds.read(bands, out_shape=(len(bands), h, w), masked=True, resampling=Resampling.nearest)
    data = np.asarray(arr.data)
    masked = np.ma.getmaskarray(arr)
    empty = masked.all(axis=0) | (data == 0).all(axis=0)
    if data.dtype.kind == "f":
        empty |= ~np.isfinite(data).any(axis=0)
    return ~empty, ds.transform * Affine.scale(ds.width / w, ds.height / h)


def worth_masking(ds: Any, bands: list[int]) -> bool:
    """Whether reading the outline is worth it at index time: the raster declares empty pixels
    (nodata, alpha, a mask), or has overviews, so the decimated read is cheap. A big raster with
    neither would be read whole just to look for undeclared black fill; there the per-chip check
    (all-zero pixels count as empty) still rejects blank chips."""
    flags = [ds.mask_flag_enums[b - 1] for b in bands]
    declared = any(MaskFlags.all_valid not in f for f in flags)
    return declared or bool(ds.overviews(bands[0]))


def valid_outline_wgs84(ds: Any, bands: list[int]) -> BaseGeometry | None:
    """The valid-data outline in WGS84; None when every pixel is valid or it is not worth reading
    (the bounding outline then serves), an empty polygon when nothing is valid."""
    if not worth_masking(ds, bands):
        return None
    valid, t = valid_mask(ds, bands)
    if valid.all():
        return None
    if not valid.any():
        return shapely.Polygon()
    polys = [shape(g) for g, v in shapes(valid.astype(np.uint8), mask=valid, transform=t) if v == 1]
    region = shapely.union_all(polys)
    px = max(abs(t.a), abs(t.e))
    region = region.buffer(-px, join_style="mitre").simplify(px * SIMPLIFY_PX)
    if region.is_empty:
        return shapely.Polygon()
    # Densify before reprojecting so long straight edges keep their curvature in lon/lat.
    region = region.segmentize(px * 16)
    tr = transformer(crs_string(ds.crs), WGS84)
    out = shapely.transform(region, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    return out if out.is_valid else shapely.make_valid(out)
