"""``objects.parquet``: one row per acquired OSM object, geometry as WKB.

Shared by ``skyscript osm --out`` and ``OUT/objects.parquet`` of a build, so a build can
start from a table made earlier (``--osm objects.parquet``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from pipeline.errors import InputFileError
from pipeline.records import OsmObject

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
    ]
)


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


def write_objects(path: str | Path, objs: Iterable[OsmObject]) -> int:
    """Write atomically (temp name, then rename); returns the row count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = objects_to_table(objs)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return table.num_rows


def table_to_objects(table: pa.Table) -> Iterator[OsmObject]:
    cols = table.to_pydict()
    for i in range(table.num_rows):
        wkb = cols["geometry"][i]
        yield OsmObject(
            osm_type=cols["osm_type"][i],
            osm_id=int(cols["osm_id"][i]),
            tags=json.loads(cols["tags"][i]),
            geometry=None if wkb is None else shapely.from_wkb(wkb),
            status=cols["status"][i],
            error_message=cols["error_message"][i] or "",
        )


def read_objects(path: str | Path) -> list[OsmObject]:
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"objects table not found: {str(path)!r}. Make one with `skyscript osm --out`.")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise InputFileError(f"{str(path)!r} is not a readable objects parquet file: {exc}") from exc
    missing = [n for n in ("osm_type", "osm_id", "tags", "geometry") if n not in table.column_names]
    if missing:
        raise InputFileError(f"{str(path)!r} lacks objects-table columns {missing}")
    return list(table_to_objects(table))
