"""Atomic file publication: write under a temporary name in the same folder, then rename.

A reader (or a resumed run) sees either the old file or the complete new one, never a
half-written file, whatever kills the writer.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def temp_path(path: Path) -> Path:
    """Hidden sibling of ``path`` unique to this process."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextmanager
def publishing(path: str | os.PathLike[str]) -> Iterator[Path]:
    """``with publishing(p) as tmp: write tmp`` — renamed onto ``p`` only if the block succeeds."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet(table: pa.Table, path: str | os.PathLike[str]) -> int:
    """Write ``table`` atomically; returns its row count."""
    with publishing(path) as tmp:
        pq.write_table(table, tmp)
    return table.num_rows
