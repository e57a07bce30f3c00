"""Imagery sources: local rasters, STAC COGs, Earth Engine — one Protocol (pipeline.seams).

``make_imagery_source`` turns the CLI's ``--imagery`` value(s) into a source.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pipeline.errors import BadInputError
from pipeline.seams import ImagerySource

if TYPE_CHECKING:
    from pipeline.config import ImageryConfig


def make_imagery_source(
    spec: str | Sequence[str], cfg: ImageryConfig | None = None, *, connect: bool = True
) -> ImagerySource:
    """One ``local:DIR`` (or a bare ``DIR``, or one GeoTIFF) → :class:`LocalRasterSource`, as before;
    ``gee:PROJECT``, ``stac:URL`` or several specs → :class:`pipeline.imagery.router.ImageryRouter`,
    which chooses a catalog collection per object (``cfg``: ``imagery.*`` settings).

    ``connect=False`` makes no request at start-up (planning only).
    """
    from pipeline.imagery.router import ImageryRouter, parse_spec

    specs = [spec] if isinstance(spec, str) else list(spec)
    if not specs:
        raise BadInputError("--imagery is empty; pass local:DIR, gee:PROJECT or stac:URL")
    parsed = [parse_spec(s) for s in specs]
    if len(parsed) == 1 and parsed[0].scheme == "local":
        from pipeline.imagery.local import LocalRasterSource  # rasterio only when needed

        return LocalRasterSource(parsed[0].value)
    return ImageryRouter(specs, cfg, connect=connect)
