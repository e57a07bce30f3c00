"""What the dataset report shows, read from a build's output folder (no plotting here).

Everything comes from the output contract: ``run.json``, the shard parquet rows (failures
included), chips from the shard tars, and ``scores/*.parquet`` when the build was scored.
"""

from __future__ import annotations

import json
import re
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import InputFileError
from storage import shards as shard_io

TAG_THRESHOLDS = (10, 100, 1000)  # SkyScript reports how many tags reach these sample counts
TOP_CUTS = (20, 30, 50)  # percent kept by the filter step
# Key names whose values never reach the page (run.json should hold none; the report checks anyway).
SECRET_MARKERS = ("secret", "token", "password", "passwd", "credential", "api_key", "access_key", "private_key")
_URL_CREDENTIALS = re.compile(r"(://)[^/@\s:]+:[^/@\s]+@")


@dataclass(frozen=True)
class Example:
    key: str
    caption_single: str
    caption_multi: str
    gsd: float | None
    collection: str
    jpeg: bytes


@dataclass
class ReportData:
    out: str
    run: dict[str, Any]
    n_rows: int
    n_ok: int
    lon: np.ndarray
    lat: np.ndarray
    gsd: np.ndarray
    collections: Counter[str]
    tag_counts: Counter[str]
    failures: Counter[str]
    failure_examples: dict[str, str]
    scores: np.ndarray | None
    score_model: str | None
    examples: list[Example] = field(default_factory=list)

    def tags_reaching(self, n: int) -> int:
        return sum(1 for c in self.tag_counts.values() if c >= n)

    def cut_scores(self) -> dict[int, float]:
        """The global threshold kept at each top fraction (the filter step's rule)."""
        if self.scores is None or not len(self.scores):
            return {}
        return {p: float(np.quantile(self.scores, 1 - p / 100)) for p in TOP_CUTS}


def redact(value: Any) -> Any:
    """A copy of a JSON-like tree with secret-looking keys masked and credentials cut from URLs."""
    if isinstance(value, dict):
        return {k: "***" if any(m in str(k).lower() for m in SECRET_MARKERS) and v else redact(v)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return _URL_CREDENTIALS.sub(r"\1***@", value)
    return value


def _rows(shards_dir: Path) -> pa.Table:
    return shard_io.read_rows(shards_dir)


def _scores(out: Path) -> tuple[np.ndarray | None, str | None]:
    files = sorted((out / "scores").glob("[0-9]*.parquet")) if (out / "scores").is_dir() else []
    if not files:
        return None, None
    table = pa.concat_tables([pq.read_table(f, columns=["score_single", "model"]) for f in files])
    scores = table.column("score_single").to_numpy(zero_copy_only=False).astype(float)
    models = sorted(set(table.column("model").to_pylist()))
    return scores[np.isfinite(scores)], ", ".join(str(m) for m in models)


def _examples(shards_dir: Path, rows: list[dict[str, Any]], n: int, seed: int) -> list[Example]:
    """``n`` samples spread over captions: distinct captions first, chosen by a seeded draw."""
    if not rows or n <= 0:
        return []
    order = [int(i) for i in np.random.default_rng(seed).permutation(len(rows))]
    seen: set[str] = set()
    first = []  # one sample per distinct caption, then the rest
    for i in order:
        if rows[i]["caption_single"] not in seen:
            seen.add(rows[i]["caption_single"])
            first.append(i)
    chosen = set(first)
    rest = [i for i in order if i not in chosen]
    picked = [rows[i] for i in (first + rest)[:n]]
    by_shard: dict[int, list[dict[str, Any]]] = {}
    for r in picked:
        by_shard.setdefault(int(r["shard"]), []).append(r)
    jpegs: dict[str, bytes] = {}
    for index, shard_rows in by_shard.items():
        wanted = {f"{r['key']}.jpg" for r in shard_rows}
        with tarfile.open(shard_io.shard_paths(shards_dir, index)["tar"]) as tar:
            for member in tar:
                if member.name in wanted:
                    fh = tar.extractfile(member)
                    if fh is not None:
                        jpegs[member.name[:-4]] = fh.read()
    return [
        Example(key=r["key"], caption_single=r["caption_single"] or "", caption_multi=r["caption_multi"] or "",
                gsd=r["gsd"], collection=r["collection"] or "", jpeg=jpegs[r["key"]])
        for r in picked if r["key"] in jpegs
    ]


def collect(out: str | Path, n_examples: int = 12, seed: int = 0) -> ReportData:
    """Read everything the report shows from the output folder ``out``."""
    out = Path(out)
    run_path = out / "run.json"
    if not run_path.is_file():
        raise InputFileError(f"{str(out)!r} has no run.json: pass the --out folder of a `skyscript build`.")
    run = json.loads(run_path.read_text())
    table = _rows(out / "shards")
    cols = table.to_pydict() if table.num_rows else {name: [] for name in table.schema.names}
    ok = [i for i, s in enumerate(cols.get("status", [])) if s == "ok"]
    failed = [i for i, s in enumerate(cols.get("status", [])) if s != "ok"]

    def floats(name: str) -> np.ndarray:
        values = cols.get(name, [])
        return np.array([values[i] if values[i] is not None else np.nan for i in ok], dtype=float)

    tag_counts: Counter[str] = Counter()
    for i in ok:
        for k, v in json.loads(cols["visible_tags"][i] or "{}").items():
            tag_counts[f"{k}={v}"] += 1
    failures: Counter[str] = Counter()
    failure_examples: dict[str, str] = {}
    codes = cols.get("error_code") or [None] * len(cols.get("status", []))
    for i in failed:
        code = codes[i] or "failed"
        failures[code] += 1
        failure_examples.setdefault(code, str(cols["error_message"][i] or "")[:300])
    ok_rows = [{name: cols[name][i] for name in ("key", "shard", "caption_single", "caption_multi", "gsd",
                                                  "collection")} for i in ok]
    scores, model = _scores(out)
    return ReportData(
        out=str(out), run=run, n_rows=table.num_rows, n_ok=len(ok), lon=floats("lon"), lat=floats("lat"),
        gsd=floats("gsd"), collections=Counter(cols["collection"][i] or "unknown" for i in ok),
        tag_counts=tag_counts, failures=failures, failure_examples=failure_examples, scores=scores,
        score_model=model, examples=_examples(out / "shards", ok_rows, n_examples, seed),
    )
