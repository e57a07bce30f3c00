"""Scene records and the scene-access seam of the SatCLIP sampler.

The sampler cuts 256×256 windows at 10 m on each scene's own grid (no reprojection), so
the seam is scene-shaped, not chip-shaped: find scenes (at a point, or all in a region),
then read a pixel window of one. ``local:DIR`` and ``stac:URL`` implement it; both
return the same :class:`Scene` records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Protocol

import numpy as np

from pipeline.errors import BadInputError

# S2-100K's 12 bands, in its order (B10, the cirrus band, is not in L2A).
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
PATCH = 256  # pixels per side
GSD = 10.0  # metres


@dataclass(frozen=True)
class Scene:
    """One acquisition on its own grid: ``transform`` is the 10 m grid's affine (6 numbers)."""

    scene_id: str
    source: str
    crs: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int
    footprint: tuple[float, float, float, float]  # WGS84 west, south, east, north
    hrefs: tuple[str, ...]  # one multi-band file, or one file per band in S2_BANDS order
    datetime: str = ""
    cloud_cover: float | None = None
    mgrs_tile: str = ""
    platform: str = ""


@dataclass(frozen=True)
class SceneFilter:
    """Scenes kept: acquired in [start, end] with cloud cover below ``max_cloud`` (percent).

    SatCLIP's S2-100K: cloud cover < 20 % and acquired after 2021-01-01. A scene whose
    date or cloud cover is unknown (a local file without tags) is kept.
    """

    start: str = "2021-01-01"
    end: str = ""
    max_cloud: float = 20.0

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value:
                try:
                    date.fromisoformat(value[:10])
                except ValueError as exc:
                    raise BadInputError(f"--{name} must be a date YYYY-MM-DD, got {value!r}") from exc
        if not (0 <= self.max_cloud <= 100) or math.isnan(self.max_cloud):
            raise BadInputError(f"--max-cloud must be a percentage in [0, 100], got {self.max_cloud}")

    def datetime_range(self) -> str:
        """The STAC ``datetime`` parameter (open ends as ``..``)."""
        return f"{self.start or '..'}/{self.end or '..'}"

    def keeps(self, scene: Scene) -> bool:
        if scene.cloud_cover is not None and not scene.cloud_cover < self.max_cloud:
            return False
        day = scene.datetime[:10]
        if day:
            if self.start and day < self.start[:10]:
                return False
            if self.end and day > self.end[:10]:
                return False
        return True


class SceneGoneError(Exception):
    """A scene found by the search could not be read any more (deleted, moved, 404)."""


class SceneReadError(Exception):
    """A scene could not be read for another reason (wrong band count, corrupt file...)."""

    def __init__(self, message: str, code: str = "read_error") -> None:
        super().__init__(message)
        self.code = code


class SceneSource(Protocol):
    """Where the sampler's scenes come from (a folder of GeoTIFFs, a STAC API, ...)."""

    name: str

    def describe(self) -> dict[str, object]:
        """What run.json records about the source (no secrets)."""
        ...

    def scenes_at(self, lon: float, lat: float, flt: SceneFilter) -> list[Scene]:
        """Scenes whose footprint holds (lon, lat), sorted by id (deterministic choice)."""
        ...

    def all_scenes(self, flt: SceneFilter, region: tuple[float, float, float, float] | None) -> list[Scene]:
        """Every scene in the region (``--by scene``), sorted by id."""
        ...

    def read(self, scene: Scene, col_off: int, row_off: int, size: int) -> tuple[np.ndarray, float | None]:
        """(bands × size × size pixels, nodata value or None) of a window on the scene's 10 m grid."""
        ...
