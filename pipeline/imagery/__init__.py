"""Imagery sources: local rasters, STAC COGs, Earth Engine — one Protocol (pipeline.seams).

``make_imagery_source`` turns the CLI's ``--imagery`` value into a source.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.errors import BadInputError
from pipeline.seams import ImagerySource

LATER_SCHEMES = ("stac", "gee")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):(.*)$")  # 2+ letters: "C:\\dir" stays a path


def make_imagery_source(spec: str) -> ImagerySource:
    """``local:DIR`` or a bare ``DIR`` (or one GeoTIFF) → :class:`LocalRasterSource`.

    ``stac:`` and ``gee:`` are recognised but not available yet; anything else is rejected
    with the list of supported forms.
    """
    from pipeline.imagery.local import LocalRasterSource  # rasterio only when needed

    text = str(spec or "").strip()
    if not text:
        raise BadInputError("--imagery is empty; pass local:DIR (a folder of GeoTIFF/COG rasters)")
    m = _SCHEME.match(text)
    if m is None or Path(text).exists():
        return LocalRasterSource(text)
    scheme, rest = m.group(1).lower(), m.group(2)
    if scheme == "local":
        if not rest.strip():
            raise BadInputError("--imagery local: needs a folder, e.g. local:/data/rasters")
        return LocalRasterSource(rest.strip())
    if scheme in LATER_SCHEMES:
        raise BadInputError(
            f"--imagery {text!r}: the {scheme!r} imagery source is not implemented yet (it comes in a "
            "later issue); use local:DIR with a folder of GeoTIFF/COG rasters for now"
        )
    raise BadInputError(
        f"--imagery {text!r}: unknown scheme {scheme!r}; supported: local:DIR or a bare DIR "
        f"({', '.join(s + ':' for s in LATER_SCHEMES)} come later)"
    )
