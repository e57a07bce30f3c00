"""The two-stage tag model: stage 1 groundable yes/no, stage 2 the max GSD class.

Both stages are scikit-learn logistic regressions on text embeddings (by default on Nystroem
RBF-kernel features of them), with balanced class weights and the regularisation strength
chosen by an inner cross-validation on the training rows only. A tag's input is the embedding
of ``"key value"`` next to the embedding of its key alone: the key names the family (``shop``
vs ``amenity``), which decides much of the label, while the full text carries the value's
meaning. The fitted weights are stored as plain arrays (``model.npz``) plus ``model.json``
(embedder, label-file hash, chosen C, metrics, versions): no pickles, so a saved model loads in
any scikit-learn version, and prediction needs only numpy and the embedder.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import BadInputError, InputFileError
from tag_classifier.embedders import DEFAULT_EMBEDDER, TextEmbedder, make_embedder
from tag_classifier.labels import GSD_CLASSES, WILDCARD, LabelSet

MODEL_FILE = "model.npz"
META_FILE = "model.json"
FORMAT_VERSION = 2
# Unit-norm embeddings, no scaling: weak regularisation is usually chosen, so the grid leans high.
CS: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
INNER_FOLDS = 5
# RBF features (Nystroem) let the logistic regression draw non-linear boundaries between key
# families. Rows are two unit vectors (squared distances in [0, 4]); gamma 0.5 was picked on
# development splits (seeds 1 and 2, never the reported seed 0) as the widest kernel that beats
# the linear model on random folds without losing to it when whole key families are held out
# (gamma 1 memorised: -5 points there).
KERNELS: tuple[str, ...] = ("rbf", "linear")
DEFAULT_KERNEL = "rbf"
RBF_GAMMA = 0.5
RBF_COMPONENTS = 800
Progress = Callable[[str], None]


def tag_text(key: str, value: str) -> str:
    """The text embedded for a tag: ``"key value"`` in words (SkyScript's input form).

    ``_`` and ``:`` become spaces so sub-words reach the tokenizer; a ``key=*`` row is just its
    key and a ``prefix:*=*`` row its prefix.
    """
    k = key[: -len(":" + WILDCARD)] if key.endswith(":" + WILDCARD) else key
    words = k.replace("_", " ").replace(":", " ").strip()
    if value == WILDCARD:
        return words
    return f"{words} {value.replace('_', ' ').replace(';', ', ').strip()}".strip()


def key_text(key: str) -> str:
    return tag_text(key, WILDCARD)


def featurize(embedder: TextEmbedder, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
    """``[embed("key value"), embed("key")]`` per tag, float32 ``(n, 2 * dim)``."""
    full = embedder.embed([tag_text(k, v) for k, v in pairs])
    keys = embedder.embed([key_text(k) for k, _v in pairs])
    return np.hstack([full, keys]).astype(np.float32)


@dataclass
class TrainingSet:
    pairs: list[tuple[str, str]]
    texts: list[str]
    groundable: np.ndarray  # bool (n,)
    gsd_class: np.ndarray  # int (n,), index into GSD_CLASSES, -1 for non-groundable
    family: list[str]  # key root (``addr`` for addr:street), for grouped CV
    dropped: int = 0  # rows whose text repeated an earlier row's text


def training_set(labels: LabelSet) -> TrainingSet:
    """One row per distinct text; a repeated text keeps its first label (e.g. name=* and name:*=*)."""
    seen: set[str] = set()
    pairs: list[tuple[str, str]] = []
    texts, g, c, fam = [], [], [], []
    for lab in labels.labels:
        t = tag_text(lab.key, lab.value)
        if t in seen:
            continue
        seen.add(t)
        pairs.append((lab.key, lab.value))
        texts.append(t)
        g.append(lab.groundable)
        c.append(GSD_CLASSES.index(lab.max_gsd) if lab.max_gsd is not None else -1)
        fam.append(lab.key.split(":")[0])
    return TrainingSet(pairs, texts, np.array(g, bool), np.array(c, int), fam, dropped=len(labels) - len(texts))


@dataclass
class LinearStage:
    """A fitted (multinomial or binary) logistic regression as plain arrays.

    With ``basis`` set, the regression runs on Nystroem RBF-kernel features
    ``exp(-gamma |x - b|^2) @ normalization.T`` (scikit-learn's ``Nystroem.transform``).
    """

    coef: np.ndarray  # (k, d); k == 1 for binary
    intercept: np.ndarray  # (k,)
    classes: np.ndarray  # class labels in column order
    C: float
    basis: np.ndarray | None = None  # (m, d_in) Nystroem components
    normalization: np.ndarray | None = None  # (m, m)
    gamma: float = 0.0

    def features(self, X: np.ndarray) -> np.ndarray:
        if self.basis is None or self.normalization is None:
            return X
        d2 = (X * X).sum(1)[:, None] + (self.basis * self.basis).sum(1)[None, :] - 2.0 * X @ self.basis.T
        return np.exp(-self.gamma * np.maximum(d2, 0.0)) @ self.normalization.T

    def proba(self, X: np.ndarray) -> np.ndarray:
        z = self.features(X) @ self.coef.T + self.intercept
        if self.coef.shape[0] == 1:
            p1 = 1.0 / (1.0 + np.exp(-np.clip(z[:, 0], -50, 50)))
            return np.stack([1 - p1, p1], axis=1)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes[np.argmax(self.proba(X), axis=1)]


def fit_stage(X: np.ndarray, y: np.ndarray, seed: int = 0, kernel: str = DEFAULT_KERNEL) -> LinearStage:
    """Balanced logistic regression; C picked by stratified inner CV on these rows only.

    ``kernel="rbf"`` first maps the rows to Nystroem RBF features (fitted without labels on
    these training rows); ``"linear"`` uses the embeddings as they are.
    """
    from sklearn.kernel_approximation import Nystroem
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    counts = np.bincount(np.unique(y, return_inverse=True)[1])
    if len(counts) < 2:
        raise BadInputError("cannot train: the labels have only one class for a stage; add both kinds of rows")
    if kernel not in KERNELS:
        raise BadInputError(f"unknown kernel {kernel!r}; use one of {KERNELS}")
    folds = max(2, min(INNER_FOLDS, int(counts.min())))
    ny = None
    if kernel == "rbf":
        ny = Nystroem(kernel="rbf", gamma=RBF_GAMMA, n_components=min(RBF_COMPONENTS, len(X)), random_state=seed)
        X = ny.fit_transform(X)
    # One BLAS thread: these fits are small, and threads only fight on a shared CPU.
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")  # convergence chatter on the weakest C values
        clf = LogisticRegressionCV(
            Cs=list(CS),
            cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
            class_weight="balanced",
            scoring="accuracy",
            max_iter=3000,
            n_jobs=1,
        ).fit(X, y)
    return LinearStage(
        coef=clf.coef_.astype(np.float32),
        intercept=clf.intercept_.astype(np.float32),
        classes=clf.classes_,
        C=float(np.atleast_1d(clf.C_)[0]),
        basis=None if ny is None else ny.components_.astype(np.float32),
        normalization=None if ny is None else ny.normalization_.astype(np.float32),
        gamma=0.0 if ny is None else RBF_GAMMA,
    )


@dataclass
class TwoStageModel:
    embedder_name: str
    embedder_id: str
    labels_sha256: str
    stage1: LinearStage
    stage2: LinearStage
    meta: dict[str, Any] = field(default_factory=dict)
    cache_path: str | None = None
    _embedder: TextEmbedder | None = field(default=None, repr=False)

    @property
    def embedder(self) -> TextEmbedder:
        if self._embedder is None:
            self._embedder = make_embedder(self.embedder_name, self.cache_path)
            if self._embedder.id != self.embedder_id:
                raise BadInputError(
                    f"model was trained with embedder {self.embedder_id!r} but {self.embedder_name!r} now gives "
                    f"{self._embedder.id!r}; retrain with skyscript tags train"
                )
        return self._embedder

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "two-stage-logreg",
            "embedder": self.embedder_name,
            "embedder_id": self.embedder_id,
            "labels_sha256": self.labels_sha256,
            "dir": self.meta.get("dir"),
        }

    def predict_embedded(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(p_groundable, max_gsd) per row; max_gsd is stage 2's class whatever stage 1 says."""
        p = self.stage1.proba(X)[:, list(self.stage1.classes).index(True)]
        gsd = np.array([GSD_CLASSES[int(i)] for i in self.stage2.predict(X)], dtype=float)
        return p, gsd

    def predict_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[bool, float, float | None]]:
        if not pairs:
            return []
        X = featurize(self.embedder, pairs)
        p, gsd = self.predict_embedded(X)
        return [(bool(pi >= 0.5), float(pi), float(g) if pi >= 0.5 else None) for pi, g in zip(p, gsd, strict=True)]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_embedder"] = None  # Dask workers rebuild it (and share the disk cache)
        return state

    def save(self, out_dir: str | Path) -> Path:
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        arrays = {}
        for name, st in (("stage1", self.stage1), ("stage2", self.stage2)):
            for f in ("coef", "intercept", "classes", "basis", "normalization"):
                if getattr(st, f) is not None:
                    arrays[f"{name}_{f}"] = np.asarray(getattr(st, f))
        tmp = d / (MODEL_FILE + ".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(d / MODEL_FILE)
        meta = {
            **{k: v for k, v in self.meta.items() if k != "dir"},
            "format_version": FORMAT_VERSION,
            "embedder": self.embedder_name,
            "embedder_id": self.embedder_id,
            "labels_sha256": self.labels_sha256,
            "stage1_C": self.stage1.C,
            "stage2_C": self.stage2.C,
            "stage1_gamma": self.stage1.gamma,
            "stage2_gamma": self.stage2.gamma,
            "gsd_classes": list(GSD_CLASSES),
            "features": "concat(embed('key value'), embed('key'))",
        }
        write_json(d / META_FILE, meta)
        return d


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n", encoding="utf-8")
    tmp.replace(path)


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def load_model(
    model_dir: str | Path, labels: LabelSet | None = None, cache_path: str | Path | None = None
) -> TwoStageModel:
    """Load a saved model; warns when it was trained on a different labels file."""
    d = Path(model_dir)
    if not (d / META_FILE).is_file() or not (d / MODEL_FILE).is_file():
        raise InputFileError(
            f"no trained tag model in {str(d)!r} (expected {META_FILE} and {MODEL_FILE}); "
            "create one with: skyscript tags train --out DIR"
        )
    try:
        meta = json.loads((d / META_FILE).read_text(encoding="utf-8"))
        z = np.load(d / MODEL_FILE, allow_pickle=False)
        stages = {
            name: LinearStage(
                coef=z[f"{name}_coef"],
                intercept=z[f"{name}_intercept"],
                classes=z[f"{name}_classes"],
                C=float(meta[f"{name}_C"]),
                basis=z[f"{name}_basis"] if f"{name}_basis" in z.files else None,
                normalization=z[f"{name}_normalization"] if f"{name}_normalization" in z.files else None,
                gamma=float(meta.get(f"{name}_gamma", 0.0)),
            )
            for name in ("stage1", "stage2")
        }
        if meta.get("format_version") != FORMAT_VERSION:
            raise KeyError("format_version")
    except (OSError, ValueError, KeyError) as exc:
        raise InputFileError(
            f"tag model in {str(d)!r} is unreadable or from another version ({exc}); retrain it"
        ) from None
    if labels is not None and labels.sha256 != meta["labels_sha256"]:
        warnings.warn(
            f"tag model in {d} was trained on another labels file (sha256 {meta['labels_sha256'][:12]}, now "
            f"{labels.sha256[:12]}); labelled tags still use the labels, retrain to refresh the model",
            stacklevel=2,
        )
    meta["dir"] = str(d)
    return TwoStageModel(
        embedder_name=meta["embedder"],
        embedder_id=meta["embedder_id"],
        labels_sha256=meta["labels_sha256"],
        stage1=stages["stage1"],
        stage2=stages["stage2"],
        meta=meta,
        cache_path=None if cache_path is None else str(cache_path),
    )


def _versions() -> dict[str, str]:
    import sklearn

    return {"numpy": np.__version__, "scikit-learn": sklearn.__version__}


def train(
    labels: LabelSet,
    embedder_name: str = DEFAULT_EMBEDDER,
    cache_path: str | Path | None = None,
    progress: Progress | None = None,
    seed: int = 0,
    kernel: str = DEFAULT_KERNEL,
) -> TwoStageModel:
    """Fit both stages on every labelled tag (stage 2 on the groundable ones)."""
    say = progress or (lambda _m: None)
    ts = training_set(labels)
    emb = make_embedder(embedder_name, cache_path)
    say(f"embedding {len(ts.texts)} tag texts with {emb.id}")
    X = featurize(emb, ts.pairs)
    say("fitting stage 1 (groundable)")
    s1 = fit_stage(X, ts.groundable, seed, kernel)
    g = ts.groundable
    say("fitting stage 2 (max GSD class)")
    s2 = fit_stage(X[g], ts.gsd_class[g], seed, kernel)
    m = TwoStageModel(
        embedder_name, emb.id, labels.sha256, s1, s2, cache_path=None if cache_path is None else str(cache_path)
    )
    m._embedder = emb
    p, gsd = m.predict_embedded(X)
    m.meta = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "labels_file": labels.origin,
        "n_labels": len(labels),
        "n_texts": len(ts.texts),
        "n_groundable": int(g.sum()),
        "embedding_dim": int(X.shape[1]),
        "seed": seed,
        "kernel": kernel,
        "versions": _versions(),
        "metrics": {
            "train_fit": {  # resubstitution: an upper bound, not a generalisation estimate
                "stage1_accuracy": float(np.mean((p >= 0.5) == g)),
                "stage2_accuracy": float(np.mean(np.array([GSD_CLASSES.index(x) for x in gsd[g]]) == ts.gsd_class[g])),
            },
        },
    }
    return m


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
) -> dict[str, Any]:
    """Nested k-fold CV: each outer fold trains (and picks C) on its training rows only.

    Stage 2 is scored on the truly groundable rows of each test fold (as SkyScript reports it).
    ``group_by_family`` keeps every key family (``addr``, ``building``…) inside one fold: a
    harder estimate of how the model does on keys it has never seen.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    say = progress or (lambda _m: None)
    ts = training_set(labels)
    X = featurize(make_embedder(embedder_name, cache_path), ts.pairs)
    y1, y2 = ts.groundable, ts.gsd_class
    if group_by_family:
        splits = StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(X, y1, ts.family)
    else:
        splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y1)
    p1 = np.zeros(len(y1))
    p2 = np.full(len(y1), -1)
    chosen: list[dict[str, float]] = []
    for i, (tr, te) in enumerate(splits, start=1):
        say(f"fold {i}/{folds}")
        s1 = fit_stage(X[tr], y1[tr], seed, kernel)
        p1[te] = s1.proba(X[te])[:, list(s1.classes).index(True)]
        gtr = tr[y1[tr]]
        s2 = fit_stage(X[gtr], y2[gtr], seed, kernel)
        gte = te[y1[te]]
        if len(gte):
            p2[gte] = s2.predict(X[gte])
        chosen.append({"stage1_C": s1.C, "stage2_C": s2.C})
    g = y1
    out = _metrics(y1, p1, y2[g], p2[g])
    out.update(
        {
            "folds": folds,
            "split": "stratified-by-family" if group_by_family else "stratified",
            "seed": seed,
            "kernel": kernel,
            "chosen_C": chosen,
            "embedder": embedder_name,
            "labels_sha256": labels.sha256,
            "n_texts": len(ts.texts),
        }
    )
    if not math.isfinite(out["stage1"]["accuracy"]):
        raise BadInputError("cross-validation produced no predictions; check the labels file")
    return out
