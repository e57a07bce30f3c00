"""``objects.parquet``: one row per acquired OSM object, geometry as WKB.

Shared by ``skyscript osm --out`` and ``OUT/objects.parquet`` of a build, so a build can
start from a table made earlier (``--osm objects.parquet``). Writing and reading stream in
row batches so a country- or planet-sized acquisition never sits in memory at once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType

import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from pipeline.errors import InputFileError
from pipeline.records import OsmObject
from storage.atomic import temp_path
from storage.geoparquet import geo_metadata

SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("osm_type", pa.string()),
        ("osm_id", pa.int64()),
        ("tags", pa.string()),  # JSON object; keeps arbitrary keys without a map-type dance
        ("geometry", pa.binary()),  # WKB, WGS84
        ("geom_type", pa.string()),
        ("status", pa.string()),
        ("error_message", pa.string()),
    ],
    # GeoParquet metadata, so geopandas.read_parquet and QGIS open the table as it is.
    metadata=geo_metadata(),
)
REQUIRED_COLUMNS = ("osm_type", "osm_id", "tags", "geometry")
BATCH_ROWS = 10_000  # rows held before a row group is written (bounds memory)


def objects_to_table(objs: Iterable[OsmObject]) -> pa.Table:
    rows: dict[str, list] = {name: [] for name in SCHEMA.names}
    for o in objs:
        rows["key"].append(o.key)
        rows["osm_type"].append(o.osm_type)
        rows["osm_id"].append(int(o.osm_id))
        rows["tags"].append(json.dumps(o.tags, ensure_ascii=False, sort_keys=False))
        rows["geometry"].append(None if o.geometry is None else shapely.to_wkb(o.geometry))
        rows["geom_type"].append(None if o.geometry is None else o.geometry.geom_type)
        rows["status"].append(o.status)
        rows["error_message"].append(o.error_message)
    return pa.Table.from_pydict(rows, schema=SCHEMA)


class ObjectsWriter:
    """Streaming, atomic writer: rows go to a temp file in batches; ``close`` renames it.

    Leaving the ``with`` block through an exception removes the temp file, so an existing
    table at ``path`` is never replaced by a partial one.
    """

    def __init__(self, path: str | Path, batch_rows: int = BATCH_ROWS) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temp_path(self.path)
        self.batch_rows = batch_rows
        self.rows = 0
        self._pending: list[OsmObject] = []
        self._writer = pq.ParquetWriter(self.tmp, SCHEMA)

    def write(self, obj: OsmObject) -> None:
        self._pending.append(obj)
        if len(self._pending) >= self.batch_rows:
            self._flush()

    def write_all(self, objs: Iterable[OsmObject]) -> int:
        for o in objs:
            self.write(o)
        return self.rows + len(self._pending)

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(objects_to_table(self._pending))
            self.rows += len(self._pending)
            self._pending = []

    def close(self) -> int:
        self._flush()
        self._writer.close()
        os.replace(self.tmp, self.path)
        return self.rows

    def abort(self) -> None:
        self._writer.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> ObjectsWriter:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if et is None:
            self.close()
        else:
            self.abort()


def write_objects(path: str | Path, objs: Iterable[OsmObject]) -> int:
    """Write atomically (temp name, then rename), streaming in batches; returns the row count."""
    with ObjectsWriter(path) as writer:
        writer.write_all(objs)
    return writer.rows


def table_to_objects(table: pa.Table) -> Iterator[OsmObject]:
    cols = table.to_pydict()
    for i in range(table.num_rows):
        wkb = cols["geometry"][i]
        yield OsmObject(
            osm_type=cols["osm_type"][i],
            osm_id=int(cols["osm_id"][i]),
            tags=json.loads(cols["tags"][i]),
            geometry=None if wkb is None else shapely.from_wkb(wkb),
            status=(cols["status"][i] if "status" in cols else None) or "ok",
            error_message=(cols["error_message"][i] if "error_message" in cols else None) or "",
        )


def check_objects_table(path: str | os.PathLike[str]) -> pq.ParquetFile:
    """Open ``path`` as an objects table or raise :class:`InputFileError` saying why."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"objects table not found: {str(path)!r}. Make one with `skyscript osm --out`.")
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise InputFileError(f"{str(path)!r} is not a readable objects parquet file: {exc}") from exc
    missing = [n for n in REQUIRED_COLUMNS if n not in pf.schema_arrow.names]
    if missing:
        raise InputFileError(f"{str(path)!r} lacks objects-table columns {missing}")
    return pf


def iter_objects(path: str | Path, batch_rows: int = BATCH_ROWS) -> Iterator[OsmObject]:
    """Stream the objects of a table batch by batch (bounded memory)."""
    pf = check_objects_table(path)
    for batch in pf.iter_batches(batch_size=batch_rows):
        yield from table_to_objects(pa.Table.from_batches([batch]))


def read_objects(path: str | Path) -> list[OsmObject]:
    return list(iter_objects(path))
