"""Re-filtering without re-scoring: one global threshold over all scored samples.

``select_top`` keeps exactly ``round(N * top / 100)`` rows (halves rounded up): the best scores,
ties at the threshold broken by key (ascending), so the result is the same whatever the shard
order or the number of score files. It finds the threshold with a linear-time partition and only
sorts the rows it keeps, which is what makes millions of rows a matter of a second or two.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.errors import BadInputError, InputFileError
from storage.atomic import publishing
from storage.scores import read_scores, require_build, shard_stem

SELECTION_SCHEMA = pa.schema([("key", pa.string()), ("score", pa.float32()), ("shard", pa.int32())])


@dataclass(frozen=True)
class FilterConfig:
    """``skyscript filter``: keep the top ``top`` percent by ``score_<by>``."""

    top: int = 30
    by: str = "single"

    def __post_init__(self) -> None:
        if not 1 <= int(self.top) <= 100:
            raise BadInputError(f"--top {self.top}: give a percentage between 1 and 100 (e.g. 20, 30 or 50)")

    @property
    def name(self) -> str:
        return f"top{int(self.top):02d}"


def keep_count(n: int, top: float) -> int:
    """Rows kept of ``n`` at ``top`` percent: round half up, in integers (no float surprises)."""
    return int((n * int(top) * 2 + 100) // 200)


def select_top(table: pa.Table, top: int) -> tuple[pa.Table, float | None]:
    """Exactly the top ``top`` % of ``table`` (key, score, shard) by score, ties by key.

    Returns the kept rows sorted by (score descending, key ascending) and the threshold (the
    lowest kept score; None when nothing is kept).
    """
    n_keep = keep_count(table.num_rows, top)
    if n_keep == 0:
        return table.slice(0, 0), None
    scores = table["score"].to_numpy(zero_copy_only=False).astype(np.float64)
    # The n_keep-th largest value is the threshold; partition is O(N), a full sort is not needed.
    thr = float(np.partition(scores, len(scores) - n_keep)[len(scores) - n_keep])
    above = np.flatnonzero(scores > thr)
    at = np.flatnonzero(scores == thr)
    need = n_keep - len(above)
    if need < len(at):  # ties at the threshold: the smallest keys win
        tie_keys = pc.take(table["key"], pa.array(at))
        at = at[pc.array_sort_indices(tie_keys).to_numpy()[:need]]
    kept = table.take(pa.array(np.concatenate([above, at])))
    order = pc.sort_indices(kept, sort_keys=[("score", "descending"), ("key", "ascending")])
    return kept.take(order), thr


@dataclass(frozen=True)
class FilterResult:
    path: Path
    total: int
    kept: int
    threshold: float | None
    summary: dict[str, Any]


def selection_path(out: Path, name: str) -> Path:
    return Path(out) / "selections" / f"{name}.parquet"


def filter_scores(out: Path, cfg: FilterConfig) -> FilterResult:
    """Write ``OUT/selections/topNN.parquet`` (+ ``topNN.json``: threshold, counts, model)."""
    out = Path(out)
    require_build(out)
    table, summary = read_scores(out, cfg.by)
    kept, thr = select_top(table, cfg.top)
    path = selection_path(out, cfg.name)
    with publishing(path) as tmp:
        pq.write_table(kept.cast(SELECTION_SCHEMA), tmp)
    info = {
        **summary,
        "top": int(cfg.top),
        "total": table.num_rows,
        "kept": kept.num_rows,
        "threshold": thr,
    }
    with publishing(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(info, indent=1, sort_keys=True), encoding="utf-8")
    return FilterResult(path, table.num_rows, kept.num_rows, thr, info)


def read_selection(out: Path, selection: str) -> pa.Table:
    """A selection by name (``top30``) or path; a clear error when it was never made."""
    p = Path(selection)
    if not p.suffix:
        p = selection_path(out, selection)
    if not p.is_file():
        raise InputFileError(
            f"selection {selection!r} not found ({p}); make it with skyscript filter {out} --top NN"
        )
    return pq.read_table(p)


def check_selection_keys(selection: pa.Table, known: set[str], name: str) -> None:
    """Refuse a selection naming keys the dataset lacks (a selection from another OUT)."""
    unknown = [k for k in selection["key"].to_pylist() if k not in known]
    if unknown:
        raise BadInputError(
            f"selection {name!r} names {len(unknown)} key(s) that no finished shard holds "
            f"(e.g. {unknown[:3]}); was it made from another dataset folder? Re-run skyscript filter"
        )


def _copy_members(src: Path, dst: Path, keep: set[str]) -> list[str]:
    """Copy the members of ``keep``'s samples byte for byte (same names, no re-encoding)."""
    written: list[str] = []
    with tarfile.open(src, "r") as tin, publishing(dst) as tmp, tarfile.open(tmp, "w") as tout:
        for member in tin:
            if not member.isfile():
                continue
            key = member.name.split("/")[-1].split(".", 1)[0]
            if key in keep:
                tout.addfile(member, tin.extractfile(member))
                if not written or written[-1] != key:
                    written.append(key)
    return written


def reshard(out: Path, selection: pa.Table, dest: Path) -> dict[str, int]:
    """A new dataset folder of only the kept samples: ``dest/shards/NNNNN.{tar,parquet}`` + stats.

    Shard numbers are kept, so a sample's shard is the same in both folders; the result is a
    build output like any other (scorable, exportable, trainable).
    """
    out, dest = Path(out), Path(dest)
    if dest.resolve() == out.resolve():
        raise BadInputError(f"--reshard {dest}: give a new folder, not the dataset folder itself")
    src_shards = out / "shards"
    by_shard: dict[int, set[str]] = {}
    for key, shard in zip(selection["key"].to_pylist(), selection["shard"].to_pylist(), strict=True):
        by_shard.setdefault(int(shard), set()).add(key)
    totals = {"shards": 0, "samples": 0}
    for index, keep in sorted(by_shard.items()):
        stem = shard_stem(index)
        dst_dir = dest / "shards"
        written = _copy_members(src_shards / f"{stem}.tar", dst_dir / f"{stem}.tar", keep)
        missing = keep - set(written)
        if missing:
            raise BadInputError(
                f"selection names {len(missing)} key(s) missing from shard {stem} (e.g. {sorted(missing)[:3]})"
            )
        rows = pq.read_table(src_shards / f"{stem}.parquet")
        rows = rows.filter(pc.is_in(rows["key"], pa.array(sorted(keep))))
        with publishing(dst_dir / f"{stem}.parquet") as tmp:
            pq.write_table(rows, tmp)
        stats = {"shard": index, "count": rows.num_rows, "successes": rows.num_rows, "failed": 0, "errors": {}}
        with publishing(dst_dir / f"{stem}_stats.json") as tmp:  # the done marker, last
            tmp.write_text(json.dumps(stats, indent=1, sort_keys=True), encoding="utf-8")
        totals["shards"] += 1
        totals["samples"] += len(written)
    return totals
