"""Tag-visibility predictions on every distinct tag of an OSM extract (tags/s).

Reads every distinct ``key=value`` of the file (default: the real Helsinki extract), then times:

- ``labels``: the labels-file lookup alone (exact row, ``key=*``, prefix) for every tag;
- ``predict cold``: labels plus the model for unlabelled tags, with an empty embedding cache
  (what ``skyscript tags predict`` costs on first sight of a tag; embedder load included);
- ``predict warm``: the same again, embeddings served from the disk cache;
- ``model only cold``: the model on *every* distinct tag, ignoring the labels (raw embedder +
  logistic throughput, embedder already loaded).

    .venv/bin/python bench/bench_tags.py [--osm FILE] [--model DIR | --embedder minilm] [--out preds.csv]

Without ``--model`` a model is trained first (minutes on a small CPU) into a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tag_classifier.labels import load_labels  # noqa: E402
from tag_classifier.model import load_model, train  # noqa: E402
from tag_classifier.predict import predict_tags, write_predictions  # noqa: E402

HELSINKI = ROOT.parent / "shared" / "data" / "osm" / "helsinki.osm.pbf"


def distinct_tags(path: Path) -> Counter[tuple[str, str]]:
    import osmium

    counts: Counter[tuple[str, str]] = Counter()
    for obj in osmium.FileProcessor(str(path)):
        for t in obj.tags:
            counts[(t.k, t.v)] += 1
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--osm", type=Path, default=HELSINKI)
    ap.add_argument("--model", type=Path, help="a folder from skyscript tags train (default: train one now)")
    ap.add_argument("--embedder", default="minilm", help="embedder for the model trained when --model is absent")
    ap.add_argument("--out", type=Path, help="write the predictions CSV here")
    ap.add_argument("--json", type=Path, help="write the results as JSON here")
    args = ap.parse_args()
    if not args.osm.is_file():
        print(f"OSM file not found: {args.osm}; pass --osm FILE (e.g. ../shared/data/osm/helsinki.osm.pbf)")
        return 2

    t0 = time.perf_counter()
    counts = distinct_tags(args.osm)
    pairs = sorted(counts)
    read_s = time.perf_counter() - t0
    labels = load_labels()
    res: dict[str, object] = {
        "osm": str(args.osm),
        "distinct_tags": len(pairs),
        "tag_occurrences": sum(counts.values()),
        "read_s": round(read_s, 2),
    }

    t0 = time.perf_counter()
    hits = [labels.lookup(k, v) for k, v in pairs]
    dt = time.perf_counter() - t0
    n_unlab = sum(h is None for h in hits)
    res["labelled"] = len(pairs) - n_unlab
    res["unlabelled"] = n_unlab
    res["labels_tags_per_s"] = round(len(pairs) / dt)

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "emb.sqlite"  # empty: the cold numbers include embedding every text
        model_dir = args.model
        if model_dir is None:
            t0 = time.perf_counter()
            model_dir = train(labels, args.embedder, Path(tmp) / "train_cache.sqlite").save(Path(tmp) / "model")
            res["train_s"] = round(time.perf_counter() - t0, 1)
        model = load_model(model_dir, labels=labels, cache_path=cache)
        res["embedder_id"] = model.embedder_id

        for name in ("predict_cold", "predict_warm"):
            t0 = time.perf_counter()
            preds = predict_tags(labels, model, pairs)
            dt = time.perf_counter() - t0
            res[f"{name}_s"] = round(dt, 2)
            res[f"{name}_tags_per_s"] = round(len(pairs) / dt)
        by_model = [p for p in preds if p.source == "model"]
        res["model_groundable"] = sum(p.groundable for p in by_model)
        res["groundable_total"] = sum(p.groundable for p in preds)

        t0 = time.perf_counter()
        model.predict_pairs(pairs)  # every tag through the model, cache empty for most of them
        dt = time.perf_counter() - t0
        res["model_only_cold_s"] = round(dt, 2)
        res["model_only_cold_tags_per_s"] = round(len(pairs) / dt)
        if args.out:
            write_predictions(args.out, preds)

    print(
        f"{res['distinct_tags']} distinct tags in {args.osm.name} ({res['tag_occurrences']} occurrences), "
        f"{res['labelled']} labelled, {res['unlabelled']} for the model ({res['embedder_id']})"
    )
    print(f"  labels lookup      {res['labels_tags_per_s']:>10,} tags/s")
    print(f"  predict, cold      {res['predict_cold_tags_per_s']:>10,} tags/s  ({res['predict_cold_s']} s)")
    print(f"  predict, warm      {res['predict_warm_tags_per_s']:>10,} tags/s  ({res['predict_warm_s']} s)")
    print(f"  model only, cold   {res['model_only_cold_tags_per_s']:>10,} tags/s  ({res['model_only_cold_s']} s)")
    print(f"  groundable: {res['groundable_total']} of {res['distinct_tags']} ({res['model_groundable']} by the model)")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
