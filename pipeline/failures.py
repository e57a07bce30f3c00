"""Per-object failure reasons with a short stable code (the shard parquet's ``error_code``).

A :class:`Failure` *is* its message (a ``str`` subclass), so code that only wants the text keeps
working, while the writer tallies by ``code`` instead of by message text — messages carry ids,
sizes and file names that would make every failure its own bucket.
"""

from __future__ import annotations

from typing import Any

INVALID_GEOMETRY = "invalid_geometry"  # the OSM object has no usable geometry
NO_IMAGERY = "no_imagery"  # no raster/collection covers the object
TOO_LARGE = "too_large"  # the object does not fit the largest allowed tile
TOO_COARSE = "too_coarse"  # the only imagery is coarser than the object needs
EDGE = "edge_of_imagery"  # no tile around the object fits inside the imagery
NODATA = "nodata"  # the chip's empty share is above imagery.max_nodata_frac
IMAGERY_ERROR = "imagery_error"  # reading pixels failed (unreadable file, service error)
NO_VISIBLE_TAGS = "no_visible_tags"  # no tag is recognisable at the chip's GSD
NO_CAPTION = "no_caption"  # visible tags, but no caption phrase for them
ACQUISITION = "acquisition"  # the OSM source could not build the object (e.g. a broken relation)
UNKNOWN = "unknown"

CODES = (
    INVALID_GEOMETRY, NO_IMAGERY, TOO_LARGE, TOO_COARSE, EDGE, NODATA, IMAGERY_ERROR, NO_VISIBLE_TAGS,
    NO_CAPTION, ACQUISITION, UNKNOWN,
)


class Failure(str):
    """A failure message that carries its ``code``."""

    code: str

    def __new__(cls, code: str, message: str) -> Failure:
        obj = super().__new__(cls, message)
        obj.code = code
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (Failure, (self.code, str(self)))

    @property
    def message(self) -> str:
        return str(self)


def code_of(reason: str) -> str:
    """The code of a reason: its own for a :class:`Failure`, else ``unknown``."""
    return reason.code if isinstance(reason, Failure) else UNKNOWN


def joined(reasons: list[Failure]) -> Failure:
    """Several candidates' reasons as one: the first (finest imagery) decides the code."""
    return Failure(reasons[0].code if reasons else UNKNOWN, "; ".join(reasons))
