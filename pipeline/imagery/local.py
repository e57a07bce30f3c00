"""``LocalRasterSource``: a folder of GeoTIFF/COG rasters in any CRS, read with rasterio.

The folder is indexed once: each raster's ground GSD and band plan from its header, and its
WGS84 footprint — where it has data (:mod:`pipeline.imagery.validmask`: read from overviews or
when the raster declares nodata/alpha/masks; the densified outline otherwise) — into a shapely
STRtree for ``coverage``, so planning keeps tiles off nodata areas. ``read`` measures each chip's
empty share (no data, or zero in every band) into ``provenance["empty_fraction"]``; the build
rejects chips above ``imagery.max_nodata_frac``. ``read`` reads only the source window under
the request (decimated when the request is much coarser than the raster) and reprojects it onto
the request's grid.

Bad files: a raster without a CRS (or geotransform), one crossing the antimeridian, or a file
GDAL cannot open is skipped with a warning and listed (with the reason) under
``describe()["skipped"]`` — one stray file must not stop a planet-scale build — unless
``strict=True``, which raises instead. A missing folder, a folder with no rasters, or one where
every raster was skipped raises :class:`InputFileError`. A file that opens but fails while
reading (e.g. a truncated COG) raises :class:`ImageryError` naming it, per request, which the
build records as a failed row.

Bands and 8-bit stretches are chosen per raster by the rules in :mod:`pipeline.imagery.bands`;
the windowed warp is :mod:`pipeline.imagery.warp`.

Datasets are opened lazily and cached per thread (rasterio handles are not thread-safe), so the
source pickles cheaply for Dask workers, which reopen files on first use.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from shapely import STRtree
from shapely.geometry import Polygon, box
from shapely.geometry.base import BaseGeometry

from pipeline.errors import BadInputError, ImageryError, InputFileError
from pipeline.imagery.bands import STRETCHES, BandPlan, auto_stretch, choose_bands, to_uint8
from pipeline.imagery.georef import crs_string, footprint_wgs84, ground_gsd
from pipeline.imagery.validmask import valid_outline_wgs84
from pipeline.imagery.warp import warp_to_grid
from pipeline.records import Chip, ChipRequest
from pipeline.seams import Coverage

COLLECTION = "local"
RASTER_SUFFIXES = (".tif", ".tiff")
_RESAMPLING = {"nearest": Resampling.nearest, "bilinear": Resampling.bilinear, "cubic": Resampling.cubic}


@dataclass(frozen=True, slots=True)
class RasterInfo:
    """What the index keeps per raster (picklable; no open handles)."""

    path: str
    image_id: str  # path relative to the root folder, POSIX separators
    crs: str
    native_gsd: float
    footprint: BaseGeometry  # WGS84: where the raster has data (its outline when every pixel is valid)
    outline: Polygon  # WGS84: the raster's whole extent, nodata included
    width: int
    height: int
    count: int
    dtype: str
    nodata: float | None
    bands: BandPlan
    stretch: str  # resolved (never "auto")
    acquired: str | None


def _acquired(tags: dict[str, str]) -> str | None:
    """ISO date from common GeoTIFF date tags (TIFFTAG_DATETIME is ``YYYY:MM:DD hh:mm:ss``)."""
    for key in ("ACQUISITION_DATE", "acquired", "DATE_ACQUIRED", "TIFFTAG_DATETIME", "datetime"):
        value = tags.get(key)
        if value and len(value) >= 10 and value[:4].isdigit():
            return value[:10].replace(":", "-")
    return None


def _list_rasters(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES)


class LocalRasterSource:
    """Implements :class:`pipeline.seams.ImagerySource` over local GeoTIFF/COG files."""

    name = "local"

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        bands: Sequence[int] | None = None,
        stretch: str = "auto",
        resampling: str = "bilinear",
        strict: bool = False,
        max_open: int = 32,
    ) -> None:
        if stretch not in STRETCHES:
            raise BadInputError(f"stretch must be one of {STRETCHES}, got {stretch!r}")
        if resampling not in _RESAMPLING:
            raise BadInputError(f"resampling must be one of {sorted(_RESAMPLING)}, got {resampling!r}")
        self.root = Path(root).expanduser().resolve()
        self.bands = tuple(int(b) for b in bands) if bands is not None else None
        self.stretch = stretch
        self.resampling = resampling
        self.strict = strict
        self.max_open = max(1, int(max_open))
        self.skipped: list[dict[str, str]] = []
        self.rasters: tuple[RasterInfo, ...] = self._index()
        self._by_id = {r.image_id: r for r in self.rasters}
        self._tree: STRtree | None = None
        self._local = threading.local()

    # -- pickling: drop handles and the tree, rebuild lazily in the worker ----------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_tree"] = None
        state.pop("_local", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    # -- index ---------------------------------------------------------------------------
    def _index(self) -> tuple[RasterInfo, ...]:
        if not self.root.exists():
            raise InputFileError(
                f"imagery folder not found: {str(self.root)!r}. Pass an existing folder of GeoTIFFs "
                "as --imagery local:DIR."
            )
        paths = _list_rasters(self.root)
        if not paths:
            raise InputFileError(
                f"no GeoTIFF rasters ({'/'.join(RASTER_SUFFIXES)}) in imagery folder {str(self.root)!r}. "
                "Put .tif/.tiff files (any CRS) there, or point --imagery at another folder."
            )
        infos = []
        for path in paths:
            try:
                infos.append(self._inspect(path))
            except (ImageryError, InputFileError) as exc:
                if self.strict:
                    raise
                warnings.warn(f"skipping raster: {exc}", stacklevel=3)
                self.skipped.append({"file": self._image_id(path), "reason": str(exc)})
        if not infos:
            reasons = "; ".join(f"{s['file']}: {s['reason']}" for s in self.skipped[:5])
            raise InputFileError(
                f"no usable raster in imagery folder {str(self.root)!r} ({len(self.skipped)} skipped: "
                f"{reasons}). Fix or replace those files."
            )
        return tuple(infos)

    def _image_id(self, path: Path) -> str:
        if self.root.is_file():
            return path.name
        return path.relative_to(self.root).as_posix()

    def _inspect(self, path: Path) -> RasterInfo:
        try:
            with warnings.catch_warnings():
                # Missing georeferencing is reported by name below, not as rasterio's generic warning.
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(path) as ds:
                    return self._describe_dataset(path, ds)
        except RasterioError as exc:
            raise InputFileError(
                f"cannot read raster {str(path)!r}: {exc}. Is it a complete GeoTIFF? Re-download or remove it."
            ) from exc

    def _describe_dataset(self, path: Path, ds: Any) -> RasterInfo:
        if ds.crs is None:
            raise ImageryError(
                f"raster {str(path)!r} has no CRS (not georeferenced); assign one (e.g. "
                "`gdal_edit.py -a_srs EPSG:XXXX`) or remove it from the imagery folder."
            )
        if ds.transform == Affine.identity():
            raise ImageryError(f"raster {str(path)!r} has a CRS but no geotransform; georeference it or remove it.")
        try:
            footprint = footprint_wgs84(ds.crs, ds.transform, ds.width, ds.height)
        except ValueError as exc:
            raise ImageryError(f"raster {str(path)!r}: {exc}") from exc
        plan = choose_bands(ds.count, [c.name for c in ds.colorinterp], list(ds.descriptions), self.bands)
        stretch = auto_stretch(ds.dtypes[0], plan, ds.count) if self.stretch == "auto" else self.stretch
        valid = valid_outline_wgs84(ds, sorted(set(plan.indexes)))
        return RasterInfo(
            path=str(path),
            image_id=self._image_id(path),
            crs=crs_string(ds.crs),
            native_gsd=ground_gsd(ds.crs, ds.transform, ds.width, ds.height),
            footprint=footprint if valid is None else valid,
            outline=footprint,
            width=ds.width,
            height=ds.height,
            count=ds.count,
            dtype=ds.dtypes[0],
            nodata=None if ds.nodata is None else float(ds.nodata),
            bands=plan,
            stretch=stretch,
            acquired=_acquired(ds.tags()),
        )

    @property
    def tree(self) -> STRtree:
        if self._tree is None:
            self._tree = STRtree([r.footprint for r in self.rasters])
        return self._tree

    # -- ImagerySource ---------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        gsds = [r.native_gsd for r in self.rasters]
        return {
            "name": self.name,
            "root": str(self.root),
            "rasters": len(self.rasters),
            "gsd_range_m": [min(gsds), max(gsds)],
            "crs": sorted({r.crs if len(r.crs) < 40 else "WKT" for r in self.rasters}),
            "stretch": self.stretch,
            "bands": list(self.bands) if self.bands else None,
            "resampling": self.resampling,
            "files": [
                {
                    "image_id": r.image_id,
                    "crs": r.crs if len(r.crs) < 40 else "WKT",
                    "gsd_m": r.native_gsd,
                    "bands": list(r.bands.indexes),
                    "band_rule": r.bands.rule,
                    "stretch": r.stretch,
                }
                for r in self.rasters[:200]
            ],
            "skipped": list(self.skipped),
        }

    def coarsest_gsd(self) -> float:
        """The coarsest native ground GSD of the folder (bounds how far a tile can reach)."""
        return max(r.native_gsd for r in self.rasters)

    def identity(self) -> dict[str, Any]:
        """The rasters by name, size and grid (not the folder's path), and the read settings."""
        return {
            "kind": self.name,
            "stretch": self.stretch,
            "bands": list(self.bands) if self.bands else None,
            "resampling": self.resampling,
            "files": [
                [r.image_id, os.path.getsize(r.path), r.crs, r.width, r.height, round(r.native_gsd, 6)]
                for r in self.rasters
            ],
        }

    def footprint(self, image_id: str) -> BaseGeometry | None:
        """WGS84 valid-data area of one raster (the chip planner keeps tiles inside it)."""
        info = self._by_id.get(image_id)
        return info.footprint if info is not None else None

    def nodata_cover(self, geometry: BaseGeometry) -> list[str]:
        """Rasters whose extent covers ``geometry`` although their valid data does not."""
        if geometry is None or geometry.is_empty:
            return []
        return sorted(
            r.image_id for r in self.rasters if r.outline.covers(geometry) and not r.footprint.covers(geometry)
        )

    def coverage(self, geometry: BaseGeometry) -> list[Coverage]:
        """Rasters whose footprint covers ``geometry`` (WGS84), finest ground GSD first."""
        if geometry is None or geometry.is_empty:
            return []
        hits = [self.rasters[i] for i in self.tree.query(geometry, predicate="covered_by")]
        hits.sort(key=lambda r: (r.native_gsd, r.image_id))
        return [Coverage(COLLECTION, r.image_id, r.native_gsd, r.crs, r.acquired) for r in hits]

    def read(self, request: ChipRequest) -> Chip:
        """Pixels of ``request``'s grid from its raster (``image_id``, else the finest covering one)."""
        if request.width <= 0 or request.height <= 0 or request.gsd <= 0:
            raise ImageryError(f"request {request.key!r} has an empty grid ({request.width}x{request.height})")
        info = self._pick(request)
        try:
            data, window = self._warp(info, request)
        except RasterioError as exc:
            raise ImageryError(f"reading {info.path!r} for {request.key!r} failed: {exc}") from exc
        pixels, used = to_uint8(data, info.stretch, np.dtype(info.dtype).kind == "f")
        # Empty: no data (NaN after the warp) or zero in every band (undeclared black fill).
        invalid = ~np.isfinite(data).all(axis=0) | (data == 0).all(axis=0)
        provenance = {
            "file": info.image_id,
            "root": str(self.root),
            "native_gsd": info.native_gsd,
            "native_crs": info.crs,
            "bands": list(info.bands.indexes),
            "band_names": list(info.bands.names),
            "band_rule": info.bands.rule,
            "stretch": used,
            "resampling": self.resampling,
            "empty_fraction": float(invalid.mean()),
            "src_window": window,
        }
        return Chip(
            request=request,
            pixels=pixels,
            source=self.name,
            collection=request.collection or COLLECTION,
            image_id=info.image_id,
            acquired=info.acquired,
            native_gsd=info.native_gsd,
            provenance=provenance,
        )

    # -- reading -----------------------------------------------------------------------------
    def _pick(self, request: ChipRequest) -> RasterInfo:
        if request.image_id:
            info = self._by_id.get(request.image_id)
            if info is None:
                raise ImageryError(
                    f"request {request.key!r} names image {request.image_id!r}, which is not a usable raster "
                    f"in {str(self.root)!r}"
                )
            return info
        # An explicit grid: any raster whose extent covers it (nodata is measured on the chip).
        area = box(*request.bbox)
        found = sorted((r for r in self.rasters if r.outline.covers(area)), key=lambda r: (r.native_gsd, r.image_id))
        if not found:
            raise ImageryError(f"no raster in {str(self.root)!r} covers request {request.key!r} (bbox {request.bbox})")
        return found[0]

    def _dataset(self, info: RasterInfo) -> Any:
        """This thread's open handle for ``info`` (LRU-bounded, so huge folders do not exhaust fds)."""
        cache: OrderedDict[str, Any] | None = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = OrderedDict()
        ds = cache.get(info.path)
        if ds is not None and not ds.closed:
            cache.move_to_end(info.path)
            return ds
        try:
            ds = rasterio.open(info.path)
        except RasterioError as exc:
            raise ImageryError(f"cannot reopen raster {info.path!r}: {exc}") from exc
        cache[info.path] = ds
        while len(cache) > self.max_open:
            _path, old = cache.popitem(last=False)
            old.close()
        return ds

    def _warp(self, info: RasterInfo, request: ChipRequest) -> tuple[np.ndarray, list[int]]:
        """(3, H, W) float32 on the request grid (NaN where there is no data) and the source window."""
        ds = self._dataset(info)
        uniq = sorted(set(info.bands.indexes))
        palette = info.bands.rule == "palette"  # colour indexes must not be blended
        resampling = Resampling.nearest if palette else _RESAMPLING[self.resampling]
        warped, window = warp_to_grid(ds, uniq, request, resampling)
        if palette:
            return _apply_palette(ds, warped[0]), window
        return np.stack([warped[uniq.index(b)] for b in info.bands.indexes]), window


def _apply_palette(ds: Any, index: np.ndarray) -> np.ndarray:
    """Colour-table lookup for a paletted band (indexes → R, G, B; no-data stays NaN)."""
    cmap = ds.colormap(1)
    lut = np.zeros((256, 3), dtype=np.float32)
    for k, rgba in cmap.items():
        if 0 <= k < 256:
            lut[k] = rgba[:3]
    valid = np.isfinite(index)
    out = np.full((3, *index.shape), np.nan, dtype=np.float32)
    out[:, valid] = lut[np.clip(index[valid], 0, 255).astype(np.int64)].T
    return out
