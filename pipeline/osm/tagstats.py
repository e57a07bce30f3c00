"""Per-tag object counts of an objects table: the targeted stage's input and the dataset report's.

Each object counts once per ``key=value`` it carries, and once for ``key=*`` per key.
The table is streamed by its ``tags`` column only (no geometry is decoded).
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.errors import InputFileError
from storage.atomic import publishing
from storage.objects_table import check_objects_table

COUNT_COLUMNS = ("tag", "key", "value", "count")


def count_tags(tag_dicts: Iterable[Mapping[str, str]]) -> Counter[tuple[str, str]]:
    """``(key, value)`` → objects; ``(key, "*")`` → objects having ``key``."""
    counts: Counter[tuple[str, str]] = Counter()
    for tags in tag_dicts:
        for k, v in tags.items():
            counts[(k, v)] += 1
            counts[(k, "*")] += 1
    return counts


def count_table(path: str | os.PathLike[str], ok_only: bool = False) -> tuple[Counter[tuple[str, str]], int]:
    """Counts over an objects table and the number of objects counted."""
    pf = check_objects_table(path)
    columns = ["tags", "status"] if ok_only and "status" in pf.schema_arrow.names else ["tags"]
    counts: Counter[tuple[str, str]] = Counter()
    n = 0
    for batch in pf.iter_batches(columns=columns, batch_size=65536):
        tags = batch.column("tags").to_pylist()
        status = batch.column("status").to_pylist() if "status" in columns else [None] * len(tags)
        chosen = [json.loads(t) for t, s in zip(tags, status, strict=True) if s in (None, "ok") and t]
        counts.update(count_tags(chosen))
        n += len(chosen)
    return counts, n


def write_counts(path: str | os.PathLike[str], counts: Counter[tuple[str, str]]) -> int:
    """CSV ``tag,key,value,count``, most frequent first."""
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    with publishing(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COUNT_COLUMNS)
        for (k, v), c in rows:
            w.writerow([f"{k}={v}", k, v, c])
    return len(rows)


def read_counts(path: str | os.PathLike[str]) -> Counter[tuple[str, str]]:
    """Counts from a CSV made by :func:`write_counts`, or computed from an objects parquet."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"tag counts not found: {str(p)!r}. Make them with `skyscript tags count`.")
    if p.suffix == ".parquet" and "tags" in pq.ParquetFile(p).schema_arrow.names:
        return count_table(p)[0]
    counts: Counter[tuple[str, str]] = Counter()
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"key", "value", "count"} <= set(reader.fieldnames):
            raise InputFileError(f"{str(p)!r} is not a tag counts CSV (needs key,value,count columns)")
        for i, row in enumerate(reader, start=2):
            try:
                counts[(row["key"], row["value"])] = int(row["count"])
            except (TypeError, ValueError) as exc:
                raise InputFileError(f"{str(p)!r} line {i}: count {row.get('count')!r} is not an integer") from exc
    return counts
