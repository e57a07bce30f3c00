"""Group ground photos into satellite tiles (GRAFT-style), in metres, at any latitude.

Photos are grouped by 10° cell and calendar quarter (undated photos form their own groups).
Within a group, in a seeded order, an unassigned photo becomes a tile centre, and every
unassigned photo inside that tile — a square of ``tile_px × gsd`` metres on the centre's UTM
grid — joins it. So each photo is in at most one tile, every tile's photos lie inside it, and
the centres of one group are at least ``tile_px / 2`` pixels apart on the earlier tile's grid
(a later centre was outside every earlier tile). At most ``max_per_tile`` photos are kept per
tile (the centre plus a seeded sample); the rest are rejected as ``over_cap``.

Candidates come from a KD-tree on unit-sphere coordinates (a radius safely above the tile's
half-diagonal), then the exact test is done on the centre's UTM grid: photos in the centre's
zone reuse coordinates projected once; others are projected on demand.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import numpy as np
from pyproj import Transformer
from scipy.spatial import cKDTree

from pipeline.errors import BadInputError
from pipeline.geo import utm_epsg
from pipeline.graft.photos import GroundPhoto, Rejected

EARTH_MIN_RADIUS_M = 6_356_752.0  # polar radius: the smallest, so the angle bound is generous
# Worst UTM scale error inside a 10° cell (edge of a neighbouring zone): k ≈ 1.016; the tree radius
# is divided by the smallest scale (0.9996) and padded, so no member is ever missed.
_RADIUS_PAD = 1.05 / 0.9996


@dataclass(frozen=True, slots=True)
class TilingConfig:
    gsd: float = 1.0  # metres per pixel of the tile grid
    tile_px: int = 224
    seed: int = 0
    max_per_tile: int = 25
    cell_deg: float = 10.0
    split_block_deg: float = 0.1  # spatial blocks for the train/test split
    test_fraction: float = 0.05

    def __post_init__(self) -> None:
        if not (self.gsd > 0 and math.isfinite(self.gsd)):
            raise BadInputError(f"--gsd must be a positive number of metres per pixel, got {self.gsd}")
        if self.tile_px < 2:
            raise BadInputError(f"--tile-px must be at least 2, got {self.tile_px}")
        if self.max_per_tile < 1:
            raise BadInputError(f"--max-per-tile must be at least 1, got {self.max_per_tile}")
        if not (0.0 <= self.test_fraction <= 1.0):
            raise BadInputError(f"--test-fraction must lie in [0, 1], got {self.test_fraction}")
        if self.split_block_deg <= 0:
            raise BadInputError(f"--split-block-deg must be positive, got {self.split_block_deg}")

    @property
    def size_m(self) -> float:
        return self.tile_px * self.gsd


@dataclass(frozen=True, slots=True)
class Tile:
    tile_id: str
    lon: float  # the centre photo's location
    lat: float
    crs: str
    transform: tuple[float, float, float, float, float, float]  # (a, b, c, d, e, f), north-up
    width: int
    height: int
    date: str | None  # ISO date: median of the tile's photo dates
    n_photos: int
    group: str
    split: str  # "train" | "test"
    gsd: float


@dataclass(frozen=True, slots=True)
class Assignment:
    photo: GroundPhoto
    tile_id: str
    px_x: float  # continuous pixel coordinates in the tile (0,0 = top-left corner of pixel 0)
    px_y: float


@dataclass
class TilePlan:
    tiles: list[Tile]
    assignments: list[Assignment]
    rejected: list[Rejected] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


@lru_cache(maxsize=128)
def _to_utm(epsg: int) -> Transformer:
    return Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)


def quarter_of(date: str | None) -> str:
    if date is None:
        return "undated"
    return f"{date[:4]}Q{(int(date[5:7]) - 1) // 3 + 1}"


def cell_of(lon: float, lat: float, cell_deg: float) -> str:
    """Name of the ``cell_deg`` cell holding a point, e.g. ``E020N60`` (its south-west corner)."""
    i = math.floor(min(lon, 179.999999) / cell_deg)  # lon 180 and lat 90 stay in the last cell
    j = math.floor(min(lat, 89.999999) / cell_deg)
    w, s = i * cell_deg, j * cell_deg
    fw = f"{abs(w):03.0f}" if float(w).is_integer() else f"{abs(w):g}".replace(".", "p")
    fs = f"{abs(s):02.0f}" if float(s).is_integer() else f"{abs(s):g}".replace(".", "p")
    return f"{'W' if w < 0 else 'E'}{fw}{'S' if s < 0 else 'N'}{fs}"


def group_photos(photos: Sequence[GroundPhoto], cell_deg: float) -> dict[str, list[GroundPhoto]]:
    groups: dict[str, list[GroundPhoto]] = defaultdict(list)
    for p in photos:
        groups[f"{cell_of(p.lon, p.lat, cell_deg)}_{quarter_of(p.date)}"].append(p)
    return dict(groups)


def _unit_xyz(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    lo, la = np.radians(lon), np.radians(lat)
    return np.column_stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])


def _median_date(dates: list[str]) -> str | None:
    if not dates:
        return None
    if len(dates) == 1:  # most tiles: skip the date arithmetic
        return dates[0][:10]
    secs = sorted(datetime.fromisoformat(d).replace(tzinfo=UTC).timestamp() for d in dates)
    k = len(secs) // 2
    mid = secs[k] if len(secs) % 2 else (secs[k - 1] + secs[k]) / 2.0
    return datetime.fromtimestamp(mid, UTC).strftime("%Y-%m-%d")


def _group_seed(seed: int, group: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{group}".encode()).digest()[:8], "little")


def split_of(lon: float, lat: float, cfg: TilingConfig) -> str:
    """Spatially blocked split: every tile of one block lands on the same side (seeded hash)."""
    bi, bj = math.floor(lat / cfg.split_block_deg), math.floor(lon / cfg.split_block_deg)
    h = hashlib.sha256(f"{cfg.seed}:{bi}:{bj}".encode()).digest()
    return "test" if int.from_bytes(h[:8], "little") / 2**64 < cfg.test_fraction else "train"


def tile_group(group: str, photos: list[GroundPhoto], cfg: TilingConfig, *, brute_force: bool = False
               ) -> tuple[list[Tile], list[Assignment], list[Rejected]]:
    """Greedy tiling of one group (see the module docstring).

    ``brute_force`` is the reference implementation (tests and bench/bench_graft.py compare against
    it): every centre projects all unassigned photos of the group into its zone.
    """
    photos = sorted(photos, key=lambda p: p.photo_id)  # input order must not matter
    n = len(photos)
    lon = np.array([p.lon for p in photos], dtype=np.float64)
    lat = np.array([p.lat for p in photos], dtype=np.float64)
    zones = np.array([utm_epsg(a, b) for a, b in zip(lon, lat, strict=True)], dtype=np.int64)
    own_x, own_y = np.empty(n), np.empty(n)
    for z in np.unique(zones):
        m = zones == z
        own_x[m], own_y[m] = _to_utm(int(z)).transform(lon[m], lat[m])
    xyz = _unit_xyz(lon, lat)
    tree = None if brute_force else cKDTree(xyz)
    half = cfg.size_m / 2.0
    chord = 2.0 * math.sin(min(math.pi / 2, half * math.sqrt(2) * _RADIUS_PAD / EARTH_MIN_RADIUS_M / 2.0))
    rng = np.random.default_rng(_group_seed(cfg.seed, group))
    order = rng.permutation(n)
    assigned = np.zeros(n, dtype=bool)
    tiles: list[Tile] = []
    out: list[Assignment] = []
    rejected: list[Rejected] = []
    for c in order:
        if assigned[c]:
            continue
        zone = int(zones[c])
        if tree is None:
            cand = np.flatnonzero(~assigned)
            x, y = (np.asarray(v) for v in _to_utm(zone).transform(lon[cand], lat[cand]))
        else:
            cand = np.asarray(tree.query_ball_point(xyz[c], chord), dtype=np.int64)
            cand = cand[~assigned[cand]]
            x, y = own_x[cand], own_y[cand]  # fancy indexing copies
            other = zones[cand] != zone
            if other.any():
                x[other], y[other] = _to_utm(zone).transform(lon[cand[other]], lat[cand[other]])
        x0, y1 = float(own_x[c]) - half, float(own_y[c]) + half  # own_x[c] is in the centre's own zone
        col, row = (x - x0) / cfg.gsd, (y1 - y) / cfg.gsd
        inside = (col >= 0) & (col < cfg.tile_px) & (row >= 0) & (row < cfg.tile_px)
        members = cand[inside].tolist()
        pix = dict(zip(members, zip(col[inside].tolist(), row[inside].tolist(), strict=True), strict=True))
        assigned[members] = True
        tile_id = f"{group}_{len(tiles):05d}"
        others = sorted(i for i in members if i != c)
        if len(others) + 1 > cfg.max_per_tile:
            keep = sorted(rng.choice(others, size=cfg.max_per_tile - 1, replace=False).tolist())
            for i in sorted(set(others) - set(keep)):
                rejected.append(Rejected(photos[i].photo_id, "over_cap",
                                         f"tile {tile_id} already has {cfg.max_per_tile} photos",
                                         photos[i].lon, photos[i].lat))
            others = keep
        kept = [int(c), *others]
        dates = [d for d in (photos[i].date for i in kept) if d is not None]
        tiles.append(Tile(
            tile_id=tile_id, lon=float(lon[c]), lat=float(lat[c]), crs=f"EPSG:{zone}",
            transform=(cfg.gsd, 0.0, x0, 0.0, -cfg.gsd, y1), width=cfg.tile_px, height=cfg.tile_px,
            date=_median_date(dates), n_photos=len(kept), group=group,
            split=split_of(float(lon[c]), float(lat[c]), cfg), gsd=cfg.gsd,
        ))
        out.extend(Assignment(photos[i], tile_id, *pix[i]) for i in kept)
    return tiles, out, rejected


def plan_tiles(photos: Sequence[GroundPhoto], cfg: TilingConfig, *, brute_force: bool = False,
               on_group: Callable[[int], None] | None = None) -> TilePlan:
    """Tile every group; tiles come out sorted by id, so the plan is deterministic per seed.

    ``on_group(n)`` is called after each group with its photo count (progress bars).
    """
    tiles: list[Tile] = []
    assignments: list[Assignment] = []
    rejected: list[Rejected] = []
    for group, members in sorted(group_photos(photos, cfg.cell_deg).items()):
        t, a, r = tile_group(group, members, cfg, brute_force=brute_force)
        if on_group is not None:
            on_group(len(members))
        tiles.extend(t)
        assignments.extend(a)
        rejected.extend(r)
    sizes = Counter(t.n_photos for t in tiles)
    stats = {
        "photos_tiled": len(assignments),
        "tiles": len(tiles),
        "undated_tiles": sum(t.date is None for t in tiles),
        "groups": len({t.group for t in tiles}),
        "over_cap": len(rejected),
        "photos_per_tile": {str(k): v for k, v in sorted(sizes.items())},
        "splits": dict(Counter(t.split for t in tiles)),
    }
    return TilePlan(tiles, assignments, rejected, stats)
