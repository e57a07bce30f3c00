"""Score tables: ``OUT/scores/NNNNN.parquet`` (key, score_single, score_multi, model) per shard.

A score file is *done* iff its marker ``NNNNN_stats.json`` exists; the marker is written last and
names the model, so a resumed ``skyscript score`` skips shards already scored with the same model.

This module (and :mod:`storage.selection`) is on ``skyscript filter``'s path, which must start in
well under a second: it imports pyarrow only — not torch, not webdataset (which pulls in torch), so
the few shard-layout helpers it needs are restated here rather than imported from
:mod:`storage.shards`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import BadInputError, InputFileError
from storage.atomic import publishing

SCORE_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("score_single", pa.float32()),
        ("score_multi", pa.float32()),
        ("model", pa.string()),
    ]
)
SCORE_BY = ("single", "multi")
_STATS = re.compile(r"^(\d+)_stats\.json$")


def column_tag(model_id: str) -> str:
    """``similarity_<tag>`` column suffix: ``CLIP_openai`` for ViT-L/14 openai, as in the released CSVs."""
    if model_id == "ViT-L-14:openai":
        return "CLIP_openai"
    return re.sub(r"[^A-Za-z0-9]+", "_", model_id).strip("_")


def shard_stem(index: int) -> str:
    """``NNNNN``: the same 5-digit names as :func:`storage.shards.shard_name`."""
    return f"{index:05d}"


def finished_shards(out: Path) -> list[int]:
    """Indices of the build's finished shards (those with ``shards/NNNNN_stats.json``)."""
    d = Path(out) / "shards"
    if not d.is_dir():
        return []
    return sorted(int(m.group(1)) for p in d.iterdir() if (m := _STATS.match(p.name)))


def require_build(out: Path) -> list[int]:
    """Finished shards of ``out``, or a one-line error saying what ``out`` should be."""
    out = Path(out)
    if not out.is_dir():
        raise InputFileError(f"dataset folder not found: {str(out)!r}; pass the --out folder of a skyscript build")
    shards = finished_shards(out)
    if not shards:
        raise InputFileError(
            f"{str(out)!r} has no finished shards (no shards/NNNNN_stats.json); run or finish skyscript build first"
        )
    return shards


def score_paths(out: Path, index: int) -> dict[str, Path]:
    d = Path(out) / "scores"
    stem = shard_stem(index)
    return {"parquet": d / f"{stem}.parquet", "stats": d / f"{stem}_stats.json"}


def score_marker(out: Path, index: int) -> dict[str, Any] | None:
    """The shard's score marker (its stats), or None when the shard is not scored."""
    p = score_paths(out, index)["stats"]
    if not p.is_file():
        return None
    return json.loads(p.read_text(encoding="utf-8"))


def scored_shards(out: Path) -> dict[int, str]:
    """``{shard index: model id}`` of every shard whose score file is done."""
    d = Path(out) / "scores"
    if not d.is_dir():
        return {}
    found: dict[int, str] = {}
    for p in d.iterdir():
        m = _STATS.match(p.name)
        if m:
            found[int(m.group(1))] = str(json.loads(p.read_text(encoding="utf-8")).get("model", ""))
    return dict(sorted(found.items()))


def write_scores(out: Path, index: int, rows: pa.Table, stats: dict[str, Any]) -> None:
    """Publish one shard's scores: parquet first, then the marker (so a kill leaves it not-done)."""
    paths = score_paths(out, index)
    with publishing(paths["parquet"]) as tmp:
        pq.write_table(rows.cast(SCORE_SCHEMA), tmp)
    with publishing(paths["stats"]) as tmp:
        tmp.write_text(json.dumps(stats, indent=1, sort_keys=True), encoding="utf-8")


def read_scores(out: Path, by: str = "single") -> tuple[pa.Table, dict[str, Any]]:
    """Every done score file as one table ``(key, score, shard)`` plus a summary.

    Rows without a score for ``by`` (NaN: e.g. no multi-object caption) are dropped and counted.
    Refuses a mix of models: one global threshold over two models' scores would mean nothing.
    """
    if by not in SCORE_BY:
        raise BadInputError(f"--by {by!r}: use one of {', '.join(SCORE_BY)}")
    out = Path(out)
    build = set(finished_shards(out))
    scored = scored_shards(out)
    if not scored:
        raise InputFileError(f"{str(out)!r} has no scores (scores/NNNNN_stats.json); run skyscript score {out} first")
    models = sorted(set(scored.values()))
    if len(models) > 1:
        raise BadInputError(
            f"{str(out)!r} holds scores of several models ({', '.join(models)}); "
            "re-run skyscript score with one model and --overwrite"
        )
    col = f"score_{by}"
    tables = []
    for index in scored:
        t = pq.ParquetFile(score_paths(out, index)["parquet"]).read(columns=["key", col])  # no pyarrow.dataset import
        tables.append(
            pa.table({"key": t["key"], "score": t[col], "shard": pa.array([index] * t.num_rows, pa.int32())})
        )
    table = pa.concat_tables(tables)
    import pyarrow.compute as pc

    valid = pc.invert(pc.is_nan(pc.fill_null(table["score"], float("nan"))))
    n_missing = table.num_rows - pc.sum(valid).as_py() if table.num_rows else 0
    table = table.filter(valid)
    summary = {
        "model": models[0],
        "by": by,
        "scored_shards": len(scored),
        "unscored_shards": sorted(build - set(scored)),
        "rows_without_score": int(n_missing or 0),
    }
    return table, summary
