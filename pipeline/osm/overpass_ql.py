"""Overpass QL: the queries this toolkit sends, and a parser for their bbox and tag filters.

Queries ask for tagged elements and recurse down (``out body; >; out skel qt;``) so the
response holds every node of every way and every member way of every relation: full
geometry, assembled locally by the same pyosmium code as the file source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.config import QueryLimits
from pipeline.errors import BadInputError
from pipeline.geo import BBox

Tag = tuple[str, str | None]


def _bbox_text(b: BBox) -> str:
    # Overpass orders a bbox south, west, north, east.
    return f"{b.south:.7f},{b.west:.7f},{b.north:.7f},{b.east:.7f}"


def _tag_filter(tag: Tag) -> str:
    key, value = tag
    if value is None:
        return f'["{key}"]'
    return f'["{key}"="{value}"]'


def build_query(
    bbox: BBox | None,
    tags: list[Tag] | None = None,
    limits: QueryLimits | None = None,
    global_bbox: bool = False,
) -> str:
    """QL for tagged objects in ``bbox`` (any tag, or only ``tags``), with full geometry.

    ``global_bbox`` writes the box as ``[bbox:s,w,n,e]`` instead of a ``(s,w,n,e)`` filter;
    both mean the same to Overpass.
    """
    lim = limits or QueryLimits()
    if bbox is None and not tags:
        raise BadInputError("an Overpass query needs a bbox or tags; the whole planet at once is refused")
    settings = f"[out:json][timeout:{lim.timeout_s}][maxsize:{lim.maxsize_bytes}]"
    local = ""
    if bbox is not None and global_bbox:
        settings += f"[bbox:{_bbox_text(bbox)}]"
    elif bbox is not None:
        local = f"({_bbox_text(bbox)})"
    # Tagged elements only; untagged member ways and nodes arrive through the recursion.
    any_tag = f"nwr{local}(if:count_tags() > 0);"
    body = "".join(f"nwr{_tag_filter(t)}{local};" for t in tags) if tags else any_tag
    return f"{settings};\n({body});\nout body;\n>;\nout skel qt;"


@dataclass(frozen=True)
class ParsedQuery:
    bbox: BBox | None
    tags: list[Tag]


_NUM = r"-?\d+(?:\.\d+)?"
_BBOX_GLOBAL = re.compile(rf"\[bbox:\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\]")
_BBOX_FILTER = re.compile(rf"\(\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\)")
_TAG = re.compile(r'\[\s*"([^"]+)"\s*(?:=\s*"([^"]*)")?\s*\]')


def parse_query(ql: str) -> ParsedQuery:
    """Bbox (either ``[bbox:s,w,n,e]`` or a ``(s,w,n,e)`` filter) and ``["k"="v"]`` / ``["k"]`` filters."""
    m = _BBOX_GLOBAL.search(ql) or _BBOX_FILTER.search(ql)
    bbox = None
    if m:
        s, w, n, e = (float(g) for g in m.groups())
        bbox = BBox(w, s, e, n)
    tags = [(k, v) for k, v in _TAG.findall(ql) if k not in ("out", "bbox")]
    return ParsedQuery(bbox, [(k, v or None) for k, v in tags])


def split_bbox(bbox: BBox, max_deg: float) -> list[BBox]:
    """Tiles of at most ``max_deg`` on a side covering ``bbox`` (keeps each query small)."""
    if max_deg <= 0:
        raise BadInputError(f"tile size must be positive, got {max_deg}")
    nx = max(1, int(-(-(bbox.east - bbox.west) // max_deg)))
    ny = max(1, int(-(-(bbox.north - bbox.south) // max_deg)))
    dx = (bbox.east - bbox.west) / nx
    dy = (bbox.north - bbox.south) / ny
    tiles = []
    for j in range(ny):
        for i in range(nx):
            w = bbox.west + i * dx
            s = bbox.south + j * dy
            e = bbox.east if i == nx - 1 else w + dx
            n = bbox.north if j == ny - 1 else s + dy
            tiles.append(BBox(w, s, e, n))
    return tiles
