"""Protocols for every external service. Each has a live and a local implementation."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from shapely.geometry.base import BaseGeometry

from pipeline.geo import BBox
from pipeline.records import Chip, ChipRequest, OsmObject


@runtime_checkable
class OsmSource(Protocol):
    """Yields :class:`OsmObject` records (failed ones included, with reasons)."""

    def describe(self) -> dict[str, Any]:
        """JSON-able description for run.json (never secrets)."""
        ...

    def objects(self, bbox: BBox | None = None) -> Iterator[OsmObject]: ...


@dataclass(frozen=True, slots=True)
class Coverage:
    """One raster/scene that covers a geometry, as an imagery source reports it."""

    collection: str
    image_id: str
    native_gsd: float  # metres per pixel
    crs: str
    acquired: str | None = None


@runtime_checkable
class ImagerySource(Protocol):
    """Finds imagery covering a geometry and reads chips on a request grid."""

    name: str  # "local", "gee", "stac"

    def describe(self) -> dict[str, Any]: ...

    def coverage(self, geometry: BaseGeometry) -> list[Coverage]:
        """Rasters that fully cover ``geometry`` (WGS84), finest GSD first."""
        ...

    def read(self, request: ChipRequest) -> Chip:
        """Read the request's grid. Raises :class:`pipeline.errors.ImageryError` when it cannot."""
        ...


@runtime_checkable
class TagVisibility(Protocol):
    """Decides which tags are visible from above at a given GSD."""

    def describe(self) -> dict[str, Any]: ...

    def visible_tags(self, tags: Mapping[str, str], gsd: float | None) -> dict[str, str]:
        """The subset of ``tags`` visible at ``gsd`` metres/pixel (``None``: any resolution)."""
        ...

    def max_gsd(self, tags: Mapping[str, str]) -> float | None:
        """Coarsest GSD at which the object's main tag is still recognisable (None: not visible)."""
        ...

