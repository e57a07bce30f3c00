"""``OUT/plan/``: the build plan, written once at prepare time and followed by every later run.

- ``plan/NNNNN.parquet``: shard N's inputs — its planned objects (``planned`` true, in sample
  order by ``position``) and every object that may fall inside one of their tiles (the
  multi-object caption's neighbour candidates). A worker reads only this file.
- ``plan/index.parquet``: ``shard, position, key`` for every planned sample. Written last: the
  plan exists iff this file does (a killed planner leaves no index, and the next run plans again).

Like img2dataset's shard plan, this pins *which* objects a build makes, so a resume never re-decides
the selection with whatever tag model or package version is current.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import OutputConflictError
from pipeline.records import OsmObject
from storage.atomic import write_parquet
from storage.objects_table import table_to_objects

PLAN_DIR = "plan"
INDEX_FILE = "index.parquet"
PLAN_FORMAT = 1  # bump when the plan's layout or selection rules change (part of the build identity)
INDEX_SCHEMA = pa.schema([("shard", pa.int32()), ("position", pa.int32()), ("key", pa.string())])


def plan_dir(out: Path) -> Path:
    return out / PLAN_DIR


def shard_inputs_path(out: Path, index: int) -> Path:
    return plan_dir(out) / f"{index:05d}.parquet"


def write_shard_inputs(out: Path, index: int, objects: pa.Table, planned_keys: list[str]) -> int:
    """Shard ``index``'s objects table with ``planned``/``position`` columns (atomic)."""
    pos = {k: i for i, k in enumerate(planned_keys)}
    keys = objects.column("key").to_pylist()
    table = objects.append_column("planned", pa.array([k in pos for k in keys], pa.bool_()))
    table = table.append_column("position", pa.array([pos.get(k, -1) for k in keys], pa.int32()))
    return write_parquet(table, shard_inputs_path(out, index))


def write_index(out: Path, shards: list[list[str]]) -> None:
    rows = {"shard": [], "position": [], "key": []}  # type: dict[str, list]
    for s, keys in enumerate(shards):
        for p, k in enumerate(keys):
            rows["shard"].append(s)
            rows["position"].append(p)
            rows["key"].append(k)
    write_parquet(pa.Table.from_pydict(rows, schema=INDEX_SCHEMA), plan_dir(out) / INDEX_FILE)


def read_index(out: Path) -> list[tuple[str, ...]] | None:
    """Planned keys per shard, or None when no (complete) plan exists."""
    p = plan_dir(out) / INDEX_FILE
    if not p.is_file():
        return None
    try:
        t = pq.read_table(p).sort_by([("shard", "ascending"), ("position", "ascending")]).to_pydict()
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise OutputConflictError(
            f"the build plan {str(p)!r} is unreadable ({exc}); pass --overwrite to plan the build again"
        ) from exc
    shards: list[list[str]] = []
    for s, k in zip(t["shard"], t["key"], strict=True):
        while len(shards) <= s:
            shards.append([])
        shards[s].append(k)
    return [tuple(ks) for ks in shards]


def read_shard_inputs(out: Path, index: int) -> tuple[list[OsmObject], list[OsmObject]]:
    """(planned objects in sample order, every object of the shard's inputs)."""
    p = shard_inputs_path(out, index)
    if not p.is_file():
        raise OutputConflictError(
            f"the build plan lacks {str(p)!r} although its index lists shard {index}; the plan is damaged: "
            "pass --overwrite to plan the build again"
        )
    table = pq.read_table(p)
    objs = list(table_to_objects(table))
    planned_flags = table.column("planned").to_pylist()
    positions = table.column("position").to_pylist()
    planned = sorted(
        ((pos, o) for o, flag, pos in zip(objs, planned_flags, positions, strict=True) if flag),
        key=lambda t: t[0],
    )
    return [o for _, o in planned], objs
