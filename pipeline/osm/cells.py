"""Random land cells, uniform by area: the SkyScript random stage (0.01° cells worldwide).

Points are drawn uniformly on the sphere inside the region (longitude uniform, sin(lat)
uniform: equal area, unlike a uniform lat/lon box which over-samples the poles), snapped
to the ``cell_deg`` grid, de-duplicated in draw order, and kept when the cell centre is
land. A cell is therefore chosen with probability proportional to its land area, and the
same seed always gives the same cells.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from shapely.geometry.base import BaseGeometry

from pipeline.errors import BadInputError, InputFileError
from pipeline.geo import BBox
from pipeline.osm.landmask import LandMask
from storage.atomic import write_parquet
from storage.geoparquet import add_box_geometry

CELL_COLUMNS = ("cell_id", "ix", "iy", "cell_deg", "west", "south", "east", "north", "lon", "lat")
WORLD = BBox(-180.0, -90.0, 180.0, 90.0)


@dataclass(frozen=True)
class CellPlan:
    """Cells on a ``cell_deg`` grid: cell (ix, iy) spans [ix*deg, (ix+1)*deg) × [iy*deg, (iy+1)*deg)."""

    cell_deg: float
    ix: np.ndarray
    iy: np.ndarray

    def __len__(self) -> int:
        return len(self.ix)

    def bboxes(self) -> list[BBox]:
        d = self.cell_deg
        return [BBox(i * d, j * d, min((i + 1) * d, 180.0), min((j + 1) * d, 90.0)) for i, j in self.pairs()]

    def pairs(self) -> list[tuple[int, int]]:
        return list(zip(self.ix.tolist(), self.iy.tolist(), strict=True))


def cell_id(ix: int, iy: int) -> str:
    """``x{ix}_y{iy}`` with ``m`` for minus: no dots, safe as a key and a file name."""
    return f"x{'m' if ix < 0 else ''}{abs(ix)}_y{'m' if iy < 0 else ''}{abs(iy)}"


def check_cell_deg(cell_deg: float) -> float:
    if not (0 < cell_deg <= 10) or not math.isfinite(cell_deg):
        raise BadInputError(f"--cell-deg must be in (0, 10] degrees, got {cell_deg}")
    return float(cell_deg)


def _draw(rng: np.random.Generator, box: BBox, n: int) -> tuple[np.ndarray, np.ndarray]:
    u = rng.uniform(math.sin(math.radians(box.south)), math.sin(math.radians(box.north)), n)
    lat = np.degrees(np.arcsin(u))
    lon = rng.uniform(box.west, box.east, n)
    return lon, lat


def sample_cells(
    n: int,
    cell_deg: float = 0.01,
    seed: int = 0,
    region: BBox | BaseGeometry | None = None,
    land: LandMask | None = None,
    land_only: bool = True,
    max_draws: int = 50_000_000,
) -> CellPlan:
    """``n`` distinct cells (centres on land unless ``land_only=False``) inside ``region``."""
    if n < 1:
        raise BadInputError(f"--n must be at least 1, got {n}")
    deg = check_cell_deg(cell_deg)
    box = _region_box(region)
    poly = None if region is None or isinstance(region, BBox) else region
    if poly is not None:
        shapely.prepare(poly)
    mask = (land or LandMask()) if land_only else None
    available = _count_cells(box, deg, mask, poly)
    if available is not None and available < n:
        raise BadInputError(
            f"the region {box.as_tuple()} holds only {available} {'land ' if land_only else ''}cells of {deg}°, "
            f"{n} asked: enlarge the region or lower --n"
        )
    rng = np.random.default_rng(seed)
    seen: set[tuple[int, int]] = set()
    order: list[tuple[int, int]] = []
    draws = 0
    while len(order) < n and draws < max_draws:
        batch = int(min(max_draws - draws, max(4096, 8 * (n - len(order)))))
        lon, lat = _draw(rng, box, batch)
        draws += batch
        ix, iy = np.floor(lon / deg).astype(np.int64), np.floor(lat / deg).astype(np.int64)
        cx, cy = (ix + 0.5) * deg, (iy + 0.5) * deg
        keep = _keep(cx, cy, box, mask, poly)
        for pair in zip(ix[keep].tolist(), iy[keep].tolist(), strict=True):
            if pair not in seen:
                seen.add(pair)
                order.append(pair)
                if len(order) == n:
                    break
    if len(order) < n:
        raise BadInputError(
            f"only {len(order)} distinct {'land ' if land_only else ''}cells of {deg}° found in "
            f"{box.as_tuple()} after {draws} draws, {n} asked: enlarge the region or lower --n"
        )
    arr = np.array(order, dtype=np.int64)
    return CellPlan(deg, arr[:, 0], arr[:, 1])


def _keep(cx: np.ndarray, cy: np.ndarray, box: BBox, mask: LandMask | None, poly: object | None) -> np.ndarray:
    """Cells whose centre is inside the region (box and polygon) and on land."""
    keep = (cx >= box.west) & (cx <= box.east) & (cy >= box.south) & (cy <= box.north)
    if mask is not None:
        keep &= mask.is_land(np.clip(cy, -90, 90), np.clip(cx, -180, 180))
    if poly is not None:
        keep &= shapely.contains_xy(poly, cx, cy)
    return keep


def _count_cells(box: BBox, deg: float, mask: LandMask | None, poly: object | None) -> int | None:
    """Exact number of eligible cells when the region is small enough to enumerate, else None."""
    x0, x1 = math.floor(box.west / deg), math.floor(box.east / deg)
    y0, y1 = math.floor(box.south / deg), math.floor(box.north / deg)
    if (x1 - x0 + 1) * (y1 - y0 + 1) > 2_000_000:
        return None
    ix, iy = np.meshgrid(np.arange(x0, x1 + 1), np.arange(y0, y1 + 1))
    cx, cy = (ix.ravel() + 0.5) * deg, (iy.ravel() + 0.5) * deg
    return int(_keep(cx, cy, box, mask, poly).sum())


def _region_box(region: BBox | BaseGeometry | None) -> BBox:
    if region is None:
        return WORLD
    if isinstance(region, BBox):
        return region
    if region.is_empty or region.geom_type not in ("Polygon", "MultiPolygon"):
        raise BadInputError(f"--region must be a polygon or multipolygon, got {region.geom_type}")
    return BBox(*region.bounds)


def write_cells(path: str | os.PathLike[str], plan: CellPlan, seed: int | None = None) -> int:
    d = plan.cell_deg
    ix, iy = plan.ix, plan.iy
    table = pa.table(
        {
            "cell_id": [cell_id(i, j) for i, j in plan.pairs()],
            "ix": ix,
            "iy": iy,
            "cell_deg": np.full(len(plan), d),
            "west": ix * d,
            "south": iy * d,
            "east": (ix + 1) * d,
            "north": (iy + 1) * d,
            "lon": (ix + 0.5) * d,
            "lat": (iy + 0.5) * d,
        }
    )
    table = table.replace_schema_metadata({"seed": str(seed), "cell_deg": str(d)})
    return write_parquet(add_box_geometry(table), path)  # GeoParquet: cells open in geopandas/QGIS


def read_cells(path: str | os.PathLike[str]) -> CellPlan:
    """A plan written by :func:`write_cells`; errors name the file and what is wrong."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"cells file not found: {str(p)!r}. Make one with `skyscript plan cells`.")
    try:
        table = pq.read_table(p, columns=["ix", "iy", "cell_deg"])
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise InputFileError(f"{str(p)!r} is not a cells parquet file (needs ix, iy, cell_deg): {exc}") from exc
    if table.num_rows == 0:
        raise InputFileError(f"cells file {str(p)!r} has no cells; plan some with `skyscript plan cells`.")
    degs = np.unique(table["cell_deg"].to_numpy())
    if len(degs) != 1:
        raise InputFileError(f"cells file {str(p)!r} mixes cell sizes {degs.tolist()}; use one size per plan")
    return CellPlan(check_cell_deg(float(degs[0])), table["ix"].to_numpy(), table["iy"].to_numpy())
