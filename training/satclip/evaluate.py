"""``skyscript eval location``: linear probes on location embeddings, with spatially blocked folds.

A table of (lon, lat, target) — air temperature, elevation, a land-cover class — is split
into folds by ``block_deg``° grid blocks (GroupKFold), so test points are never next door to
training points, and a linear model (ridge regression, or multinomial logistic regression)
is fitted on the encoder's embeddings and, as the baseline, on raw (lon, lat). Reported:
R², MAE and RMSE for regression; accuracy and macro-F1 for classification; mean and
standard deviation over folds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import BadInputError, InputFileError

TASKS = ("auto", "regression", "classification")


@dataclass(frozen=True)
class ProbeConfig:
    target: str = "target"
    task: str = "auto"
    folds: int = 5
    block_deg: float = 10.0
    lon_col: str = "lon"
    lat_col: str = "lat"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise BadInputError(f"--task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.folds < 2:
            raise BadInputError(f"--folds must be at least 2, got {self.folds}")
        if not (0 < self.block_deg <= 180) or math.isnan(self.block_deg):
            raise BadInputError(f"--block-deg must be in (0, 180], got {self.block_deg}")


def read_table(path: str | Path, cfg: ProbeConfig) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) lon/lat and the target column of a CSV or parquet table."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"table not found: {str(p)!r}")
    df = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
    missing = [c for c in (cfg.lon_col, cfg.lat_col, cfg.target) if c not in df.columns]
    if missing:
        raise BadInputError(f"{p} lacks column(s) {missing}; it has {list(df.columns)} (see --target, --lon, --lat)")
    df = df.dropna(subset=[cfg.lon_col, cfg.lat_col, cfg.target])
    lonlat = df[[cfg.lon_col, cfg.lat_col]].to_numpy(dtype=np.float64)
    if (np.abs(lonlat[:, 1]) > 90).any():
        raise BadInputError(f"{p}: latitudes beyond ±90° in column {cfg.lat_col!r} (are lon and lat swapped?)")
    return lonlat, df[cfg.target].to_numpy()


def infer_task(y: np.ndarray) -> str:
    if y.dtype.kind in "OSUb" or (y.dtype.kind in "iu" and len(np.unique(y)) <= 50):
        return "classification"
    return "regression"


def blocks(lonlat: np.ndarray, block_deg: float) -> np.ndarray:
    ix = np.floor((lonlat[:, 0] + 180.0) / block_deg).astype(np.int64)
    iy = np.floor((lonlat[:, 1] + 90.0) / block_deg).astype(np.int64)
    return ix * 100_000 + iy


def probe(features: np.ndarray, y: np.ndarray, groups: np.ndarray, task: str, folds: int) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, mean_squared_error, r2_score
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_groups = len(np.unique(groups))
    if n_groups < folds:
        raise BadInputError(f"only {n_groups} spatial blocks for {folds} folds: lower --block-deg or --folds")
    scores: dict[str, list[float]] = {}
    for train_idx, test_idx in GroupKFold(n_splits=folds).split(features, y, groups):
        if task == "regression":
            model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
        else:
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
        model.fit(features[train_idx], y[train_idx])
        pred = model.predict(features[test_idx])
        truth = y[test_idx]
        if task == "regression":
            fold = {
                "r2": r2_score(truth, pred),
                "mae": mean_absolute_error(truth, pred),
                "rmse": math.sqrt(mean_squared_error(truth, pred)),
            }
        else:
            fold = {"accuracy": accuracy_score(truth, pred), "macro_f1": f1_score(truth, pred, average="macro")}
        for k, v in fold.items():
            scores.setdefault(k, []).append(float(v))
    return {k: {"mean": float(np.mean(v)), "std": float(np.std(v))} for k, v in scores.items()}


def evaluate_location(checkpoint: str | Path, table: str | Path, cfg: ProbeConfig) -> dict[str, Any]:
    import torch

    from training.satclip.loader import load

    lonlat, y = read_table(table, cfg)
    if len(y) < cfg.folds * 2:
        raise BadInputError(f"{table} has {len(y)} usable rows; need at least {cfg.folds * 2} for {cfg.folds} folds")
    task = infer_task(y) if cfg.task == "auto" else cfg.task
    if task == "regression":
        y = y.astype(np.float64)
    encoder = load(checkpoint)
    emb = encoder.embed(torch.from_numpy(lonlat)).cpu().numpy()
    groups = blocks(lonlat, cfg.block_deg)
    return {
        "task": task,
        "rows": len(y),
        "folds": cfg.folds,
        "block_deg": cfg.block_deg,
        "blocks": len(np.unique(groups)),
        "encoder": probe(emb, y, groups, task, cfg.folds),
        "lonlat_baseline": probe(lonlat, y, groups, task, cfg.folds),
        "embedding_dim": int(emb.shape[1]),
        "checkpoint": str(checkpoint),
    }
