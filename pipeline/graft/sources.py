"""Ground photo sources behind one seam: a local table (CSV/parquet) or the Flickr API."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pipeline.cache import cache_dir
from pipeline.graft.photos import ColumnSpec, PhotoTable, load_photo_table


@runtime_checkable
class GroundPhotoSource(Protocol):
    """Yields a validated :class:`PhotoTable` (rejected rows included, with reasons)."""

    def describe(self) -> dict[str, Any]:
        """JSON-able description for the plan stats and run.json (never secrets)."""
        ...

    def load(self) -> PhotoTable: ...


@dataclass(frozen=True)
class LocalPhotoTable:
    path: str
    columns: ColumnSpec = field(default_factory=ColumnSpec)

    def describe(self) -> dict[str, Any]:
        p = Path(self.path)
        st = p.stat() if p.is_file() else None
        return {"name": "table", "path": str(p.resolve()), "bytes": st.st_size if st else None}

    def load(self) -> PhotoTable:
        return load_photo_table(self.path, self.columns)


@dataclass
class FlickrPhotoSource:
    spec: str  # flickr:W,S,E,N or flickr:LAT,LON,RADIUS_KM
    min_taken: str | None = None
    max_taken: str | None = None
    endpoint: str | None = None
    min_interval: float = 1.0
    max_indoor: float | None = None  # Flickr gives no indoor probability: rejected if set
    last_stats: dict[str, int] | None = None

    def _query(self) -> Any:
        from pipeline.graft.flickr import parse_flickr_spec

        kw: dict[str, Any] = {}
        if self.min_taken:
            kw["min_taken"] = self.min_taken
        if self.max_taken:
            kw["max_taken"] = self.max_taken
        return parse_flickr_spec(self.spec, **kw)

    def describe(self) -> dict[str, Any]:
        q = self._query()
        from pipeline.graft.flickr import FLICKR_REST

        return {"name": "flickr", "query": q.params(), "endpoint": self.endpoint or FLICKR_REST,
                "stats": self.last_stats}

    def load(self) -> PhotoTable:
        from pipeline.errors import BadInputError
        from pipeline.graft.flickr import FLICKR_REST, FlickrClient, flickr_photos

        if self.max_indoor is not None:
            raise BadInputError("--max-indoor needs an indoor probability column; Flickr results have none")
        client = FlickrClient(
            os.environ.get("FLICKR_API_KEY", ""), endpoint=self.endpoint or FLICKR_REST,
            cache_dir=cache_dir("flickr"), min_interval=self.min_interval,
        )
        table, self.last_stats = flickr_photos(client, self._query())
        return table


def make_photo_source(spec: str, columns: ColumnSpec | None = None, **flickr: Any) -> GroundPhotoSource:
    """``flickr:...`` → :class:`FlickrPhotoSource`; anything else is a local table path."""
    if spec.lower().startswith("flickr:"):
        return FlickrPhotoSource(spec, max_indoor=(columns.max_indoor if columns else None), **flickr)
    return LocalPhotoTable(spec, columns or ColumnSpec())
