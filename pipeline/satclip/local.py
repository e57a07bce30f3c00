"""``local:DIR``: a folder (searched recursively) of multi-band GeoTIFF scenes, 12 bands each.

Provenance comes from the GeoTIFF tags when present (``datetime``, ``cloud_cover``,
``mgrs_tile``, ``platform``, or their STAC names ``eo:cloud_cover``, ``s2:mgrs_tile``).
Files that cannot serve S2-100K patches (wrong band count, a geographic CRS) stay listed:
a sample that lands on one fails with the reason instead of silently shrinking the pool.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine
from rasterio.warp import transform_bounds

from pipeline.errors import InputFileError
from pipeline.satclip.reading import read_window
from pipeline.satclip.scenes import GSD, S2_BANDS, Scene, SceneFilter, SceneReadError

_TAGS = {
    "datetime": ("datetime", "DATETIME", "acquired", "TIFFTAG_DATETIME"),
    "cloud_cover": ("cloud_cover", "eo:cloud_cover", "CLOUD_COVER"),
    "mgrs_tile": ("mgrs_tile", "s2:mgrs_tile", "MGRS_TILE"),
    "platform": ("platform", "PLATFORM"),
}


def _tag(tags: dict[str, str], name: str) -> str:
    for key in _TAGS[name]:
        if tags.get(key):
            return str(tags[key])
    return ""


class LocalScenes:
    name = "local"

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputFileError(f"imagery folder not found: {str(self.folder)!r}. Pass local:DIR with GeoTIFF scenes.")
        files = sorted(p for p in self.folder.rglob("*") if p.suffix.lower() in (".tif", ".tiff") and p.is_file())
        if not files:
            raise InputFileError(f"no .tif/.tiff scenes under {str(self.folder)!r}")
        self.scenes: list[Scene] = []
        self.problems: dict[str, tuple[str, str]] = {}
        self._ids: dict[str, str] = {}
        for path in files:
            self._add(path)

    def _add(self, path: Path) -> None:
        sid = path.relative_to(self.folder).with_suffix("").as_posix().replace("/", "__").replace(".", "_")
        try:
            with rasterio.open(path) as ds:
                tags = ds.tags()
                crs, bounds, count, shape = ds.crs, ds.bounds, ds.count, (ds.width, ds.height)
        except rasterio.errors.RasterioIOError as exc:
            raise InputFileError(f"cannot open scene {str(path)!r}: {exc}") from exc
        if crs is None:
            self.problems[sid] = ("crs", f"{path} has no CRS; the sampler needs a projected (metre) grid")
            return
        try:
            footprint = transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21)
        except Exception as exc:  # pyproj raises several types
            self.problems[sid] = ("crs", f"{path}: cannot place its CRS on the globe ({exc})")
            return
        if crs.is_geographic:
            self.problems[sid] = ("crs", f"{path} is in geographic degrees ({crs}); 10 m windows need a projected CRS")
        elif count != len(S2_BANDS):
            self.problems[sid] = ("bands", f"{path} has {count} bands, {len(S2_BANDS)} needed ({'/'.join(S2_BANDS)})")
        # The 10 m grid anchored at the file's top-left corner (identical to it for 10 m files).
        width = math.floor((bounds.right - bounds.left) / GSD + 1e-6)
        height = math.floor((bounds.top - bounds.bottom) / GSD + 1e-6)
        transform = Affine(GSD, 0.0, bounds.left, 0.0, -GSD, bounds.top)
        if crs.is_geographic:  # keep the native size so a sample fails on the CRS, not on size
            width, height = shape
        cloud = _tag(tags, "cloud_cover")
        self.scenes.append(
            Scene(
                scene_id=tags.get("scene_id") or sid,
                source=f"local:{self.folder}",
                crs=crs.to_string(),
                transform=tuple(transform)[:6],  # type: ignore[arg-type]
                width=width,
                height=height,
                footprint=tuple(float(v) for v in footprint),  # type: ignore[arg-type]
                hrefs=(str(path),),
                datetime=_tag(tags, "datetime"),
                cloud_cover=float(cloud) if cloud else None,
                mgrs_tile=_tag(tags, "mgrs_tile"),
                platform=_tag(tags, "platform"),
            )
        )
        self._ids[self.scenes[-1].scene_id] = sid

    def describe(self) -> dict[str, object]:
        return {"kind": "local", "folder": str(self.folder), "scenes": len(self.scenes), "unusable": len(self.problems)}

    def footprints(self, flt: SceneFilter) -> list[tuple[float, float, float, float]]:
        return [s.footprint for s in self.scenes if flt.keeps(s)]

    def scenes_at(self, lon: float, lat: float, flt: SceneFilter) -> list[Scene]:
        hits = [
            s
            for s in self.scenes
            if flt.keeps(s) and s.footprint[0] <= lon <= s.footprint[2] and s.footprint[1] <= lat <= s.footprint[3]
        ]
        return sorted(hits, key=lambda s: s.scene_id)

    def all_scenes(self, flt: SceneFilter, region: tuple[float, float, float, float] | None) -> list[Scene]:
        out = [s for s in self.scenes if flt.keeps(s)]
        if region is not None:
            w, s_, e, n = region
            out = [
                s
                for s in out
                if not (s.footprint[2] < w or s.footprint[0] > e or s.footprint[3] < s_ or s.footprint[1] > n)
            ]
        return sorted(out, key=lambda s: s.scene_id)

    def read(self, scene: Scene, col_off: int, row_off: int, size: int) -> tuple[np.ndarray, float | None]:
        problem = self.problems.get(self._ids.get(scene.scene_id, scene.scene_id))
        if problem is not None:
            raise SceneReadError(problem[1], problem[0])
        return read_window(scene, col_off, row_off, size)
