"""Predictions for a list of tags: the labels where a row matches, the model elsewhere."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import BadInputError, InputFileError
from tag_classifier.labels import LabelSet, split_tag
from tag_classifier.visibility import TagPredictor

OUTPUT_COLUMNS = ("tag", "groundable", "p_groundable", "max_gsd")
BATCH = 4096


@dataclass(frozen=True, slots=True)
class Prediction:
    tag: str
    groundable: bool
    p_groundable: float
    max_gsd: float | None
    source: str  # "label" or "model"


def read_tags_csv(path: str | Path) -> list[tuple[str, str, str]]:
    """``(tag, key, value)`` per row of a CSV with a ``tag`` column; bad rows raise naming the row."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"tags file not found: {str(p)!r}. Pass a CSV with a 'tag' column (key=value).")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"tags file {str(p)!r} is not UTF-8 ({exc}); re-save it as UTF-8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or "tag" not in reader.fieldnames:
        raise BadInputError(f"tags file {str(p)!r} has no 'tag' column (columns: {reader.fieldnames}); add one")
    out = []
    for rec in reader:
        where = f"{p.name} row {reader.line_num}"
        tag = rec.get("tag") or ""
        key, value = split_tag(tag, where)
        out.append((tag, key, value))
    if not out:
        raise BadInputError(f"tags file {str(p)!r} has no rows under its header")
    return out


def predict_tags(
    labels: LabelSet,
    model: TagPredictor | None,
    pairs: Sequence[tuple[str, str]],
    progress: Callable[[int], None] | None = None,
) -> list[Prediction]:
    """One prediction per input pair, in order (labels first; the model for unlabelled tags)."""
    out: list[Prediction | None] = [None] * len(pairs)
    todo: dict[tuple[str, str], list[int]] = {}
    for i, (k, v) in enumerate(pairs):
        lab = labels.lookup(k, v)
        if lab is not None:
            out[i] = Prediction(f"{k}={v}", lab.groundable, 1.0 if lab.groundable else 0.0, lab.max_gsd, "label")
        else:
            todo.setdefault((k, v), []).append(i)
    if todo and model is None:
        k, v = next(iter(todo))
        raise BadInputError(
            f"tag {k}={v!r} is not labelled and no model was given; train one with skyscript tags train"
        )
    uniq = list(todo)
    for s in range(0, len(uniq), BATCH):
        chunk = uniq[s : s + BATCH]
        for pair, (g, p, gsd) in zip(chunk, model.predict_pairs(chunk), strict=True):  # type: ignore[union-attr]
            for i in todo[pair]:
                out[i] = Prediction(f"{pair[0]}={pair[1]}", g, p, gsd, "model")
        if progress is not None:
            progress(len(chunk))
    return [o for o in out if o is not None]


def write_predictions(path: str | Path, preds: Sequence[Prediction]) -> None:
    """CSV with columns tag, groundable (yes/no), p_groundable, max_gsd (empty when not groundable)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(OUTPUT_COLUMNS)
        for r in preds:
            w.writerow(
                [
                    r.tag,
                    "yes" if r.groundable else "no",
                    f"{r.p_groundable:.4f}",
                    "" if r.max_gsd is None else f"{r.max_gsd:g}",
                ]
            )
    tmp.replace(p)
