"""Local OSM sources: ``.osm.pbf`` / ``.osm`` / ``.osm.bz2`` / ``.osm.gz`` files (pyosmium) and
objects tables written earlier (``objects.parquet``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.config import OsmConfig
from pipeline.errors import BadInputError, InputFileError, require_file
from pipeline.geo import BBox
from pipeline.osm.geometry import intersects_bbox
from pipeline.osm.reader import iter_osm
from pipeline.osm.select import selector_for
from pipeline.records import OsmObject

OSM_SUFFIXES = (".osm.pbf", ".pbf", ".osm", ".osm.bz2", ".osm.gz")
_HINT = "Pass an .osm.pbf, .osm, .osm.bz2 or .osm.gz file (e.g. a Geofabrik extract)."


def check_osm_file(path: str | os.PathLike[str]) -> Path:
    """Raise :class:`InputFileError` unless ``path`` is a readable OSM file with a known suffix."""
    p = Path(path)
    require_file(str(p), "OSM file", _HINT)
    if not p.name.lower().endswith(OSM_SUFFIXES):
        raise InputFileError(f"unknown OSM file type: {str(p)!r}. {_HINT}")
    if p.stat().st_size == 0:
        raise InputFileError(f"OSM file is empty: {str(p)!r}. {_HINT}")
    return p


def check_index(index: str) -> str:
    """An osmium node-location index spec such as ``flex_mem`` or ``sparse_file_array,/tmp/nodes``."""
    import osmium

    name, _, arg = index.partition(",")
    types = osmium.index.map_types()
    if name not in types:
        raise BadInputError(f"unknown node index {index!r}; use one of {types} (file types need ',PATH')")
    if "_file_" in name and not arg:
        raise BadInputError(f"node index {name!r} stores locations in a file: pass {name},/path/to/nodes.idx")
    return index


class FileOsmSource:
    """Streams one OSM file with pyosmium; ``index`` is osmium's node-location index
    (``flex_mem`` for country files; ``sparse_file_array,/tmp/nodes`` or
    ``dense_file_array,/tmp/nodes`` keeps a planet's node locations on disk)."""

    def __init__(self, path: str | os.PathLike[str], config: OsmConfig | None = None, index: str = "flex_mem") -> None:
        self.path = check_osm_file(path)
        self.config = config or OsmConfig()
        self.index = check_index(index)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "osm-file",
            "path": str(self.path),
            "bytes": self.path.stat().st_size,
            "index": self.index.split(",")[0],
        }

    def identity(self) -> dict[str, Any]:
        from pipeline.identity import file_identity

        return {"kind": "osm-file", "file": file_identity(self.path), "skip_untagged": self.config.skip_untagged}

    def objects(self, bbox: BBox | None = None) -> Iterator[OsmObject]:
        return iter_osm(str(self.path), repr(str(self.path)), self.config, selector_for(bbox), self.index)


class TableOsmSource:
    """Objects from an ``objects.parquet`` made earlier by ``skyscript osm --out``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from storage.objects_table import check_objects_table

        self.path = Path(path)
        check_objects_table(self.path)

    def describe(self) -> dict[str, Any]:
        return {"kind": "objects-table", "path": str(self.path)}

    def identity(self) -> dict[str, Any]:
        from pipeline.identity import file_identity

        return {"kind": "objects-table", "file": file_identity(self.path)}

    def objects(self, bbox: BBox | None = None) -> Iterator[OsmObject]:
        from storage.objects_table import iter_objects

        for obj in iter_objects(self.path):
            if bbox is None or (obj.geometry is not None and intersects_bbox(obj.geometry, bbox)):
                yield obj
