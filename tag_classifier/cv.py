"""Nested cross-validation of the two-stage model (random folds, or whole key families held out)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import BadInputError
from tag_classifier.embedders import DEFAULT_EMBEDDER, make_embedder
from tag_classifier.features import DEFAULT_VARIANT, PRIOR_SMOOTHING, check_variant, featurize, seen_rows, training_set
from tag_classifier.labels import GSD_CLASSES, LabelSet
from tag_classifier.priors import KeyPriors
from tag_classifier.stages import DEFAULT_KERNEL, fit_stages, predict_gated

Progress = Callable[[str], None]


def _metrics(y1: np.ndarray, p1: np.ndarray, y2: np.ndarray, p2: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score

    yhat = p1 >= 0.5
    within = np.abs(y2 - p2) <= 1
    return {
        "stage1": {
            "n": len(y1),
            "accuracy": float(accuracy_score(y1, yhat)),
            "f1": float(f1_score(y1, yhat)),
            "precision": float(precision_score(y1, yhat, zero_division=0)),
            "recall": float(recall_score(y1, yhat)),
            "confusion_matrix": {
                "labels": ["no", "yes"],
                "rows_true_cols_pred": confusion_matrix(y1, yhat, labels=[False, True]).tolist(),
            },
        },
        "stage2": {
            "n": len(y2),
            "exact_accuracy": float(np.mean(y2 == p2)),
            "within_one_class_accuracy": float(np.mean(within)),
            "macro_f1": float(f1_score(y2, p2, average="macro", labels=list(range(len(GSD_CLASSES))), zero_division=0)),
            "confusion_matrix": {
                "labels": [f"{c:g}" for c in GSD_CLASSES],
                "rows_true_cols_pred": confusion_matrix(y2, p2, labels=list(range(len(GSD_CLASSES)))).tolist(),
            },
        },
    }

def cross_validate(
    labels: LabelSet,
    embedder_name: str = DEFAULT_EMBEDDER,
    folds: int = 5,
    cache_path: str | Path | None = None,
    group_by_family: bool = False,
    progress: Progress | None = None,
    seed: int = 0,
    kernel: str = DEFAULT_KERNEL,
    variant: str = DEFAULT_VARIANT,
) -> dict[str, Any]:
    """Nested k-fold CV: each outer fold trains (and picks C) on its training rows only.

    Stage 2 is scored on the truly groundable rows of each test fold (as SkyScript reports it).
    ``group_by_family`` keeps every key family (``addr``, ``building``…) inside one fold: a
    harder estimate of how the model does on keys it has never seen. With a "+prior" variant the
    priors are counted from each fold's training rows only (and recounted inside the inner CV).
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    say = progress or (lambda _m: None)
    ts = training_set(labels)
    check_variant(variant)
    X = featurize(make_embedder(embedder_name, cache_path), ts.pairs, value="value" in variant)
    use_prior = "prior" in variant
    y1, y2 = ts.groundable, ts.gsd_class
    if group_by_family:
        splits = StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(X, y1, ts.family)
    else:
        splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y1)
    p1 = np.zeros(len(y1))
    p2 = np.full(len(y1), -1)
    chosen: list[dict[str, float]] = []
    n_seen = 0
    for i, (tr, te) in enumerate(splits, start=1):
        say(f"fold {i}/{folds}")
        trp = [ts.pairs[i] for i in tr]
        s1, s2, base = fit_stages(X[tr], trp, y1[tr], y2[tr], seed, kernel, variant)
        Pte = None
        if use_prior:  # the test rows' priors: counted from this fold's training rows only
            Pte = KeyPriors.from_rows(trp, y1[tr], y2[tr], PRIOR_SMOOTHING).features([ts.pairs[i] for i in te])
        pte, cte = predict_gated((s1, s2), base, X[te], Pte)
        p1[te] = pte
        gmask = y1[te]
        p2[te[gmask]] = cte[gmask]
        if Pte is not None:
            n_seen += int(seen_rows(Pte).sum())
        chosen.append({"stage1_C": s1.C, "stage2_C": s2.C})
    g = y1
    out = _metrics(y1, p1, y2[g], p2[g])
    out.update(
        {
            "folds": folds,
            "split": "stratified-by-family" if group_by_family else "stratified",
            "seed": seed,
            "kernel": kernel,
            "variant": variant,
            "n_test_rows_with_priors": n_seen if use_prior else None,
            "chosen_C": chosen,
            "embedder": embedder_name,
            "labels_sha256": labels.sha256,
            "n_texts": len(ts.texts),
        }
    )
    if not math.isfinite(out["stage1"]["accuracy"]):
        raise BadInputError("cross-validation produced no predictions; check the labels file")
    return out
