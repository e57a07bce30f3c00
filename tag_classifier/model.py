"""The two-stage tag model (the model record, training, loading): stage 1 groundable yes/no, stage 2 the max GSD class.

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

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import BadInputError
from tag_classifier.cv import cross_validate
from tag_classifier.embedders import DEFAULT_EMBEDDER, TextEmbedder, make_embedder
from tag_classifier.features import (
    DEFAULT_VARIANT,
    PRIOR_SMOOTHING,
    VARIANTS,
    PriorInput,
    TrainingSet,
    _feature_text,
    check_variant,
    featurize,
    key_text,
    prior_columns,
    seen_rows,
    tag_text,
    training_set,
    value_text,
)
from tag_classifier.labels import GSD_CLASSES, LabelSet
from tag_classifier.persistence import (
    FORMAT_VERSION,
    META_FILE,
    MODEL_FILE,
    read_model_files,
    write_json,
    write_stage_arrays,
)
from tag_classifier.priors import KeyPriors
from tag_classifier.stages import (
    CS,
    DEFAULT_KERNEL,
    INNER_FOLDS,
    KERNELS,
    RBF_COMPONENTS,
    RBF_GAMMA,
    LinearStage,
    fit_stage,
    fit_stages,
    predict_gated,
)

Progress = Callable[[str], None]

@dataclass
class TwoStageModel:
    embedder_name: str
    embedder_id: str
    labels_sha256: str
    stage1: LinearStage
    stage2: LinearStage
    variant: str = DEFAULT_VARIANT
    priors: KeyPriors | None = None  # counted from all labels (the "+prior" variants)
    base1: LinearStage | None = None  # "+prior": the stages without priors, for never-seen keys
    base2: LinearStage | None = None
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
            "format": self.meta.get("format_version", FORMAT_VERSION),
            "dir": self.meta.get("dir"),
            "weights_sha256": self.meta.get("weights_sha256"),
        }

    def prior_features(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray | None:
        """All prior columns (values and "unseen" flags) per tag, from all labels; None without priors."""
        return None if self.priors is None else self.priors.features(pairs)

    @property
    def base(self) -> tuple[LinearStage, LinearStage] | None:
        return None if self.base1 is None or self.base2 is None else (self.base1, self.base2)

    def predict_embedded(self, X: np.ndarray, P: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(p_groundable, max_gsd) per row; max_gsd is stage 2's class whatever stage 1 says."""
        p, cls = predict_gated((self.stage1, self.stage2), self.base, X, P)
        return p, np.array([GSD_CLASSES[int(i)] for i in cls], dtype=float)

    def predict_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[bool, float, float | None]]:
        if not pairs:
            return []
        X = featurize(self.embedder, pairs, value="value" in self.variant)
        p, gsd = self.predict_embedded(X, self.prior_features(pairs))
        return [(bool(pi >= 0.5), float(pi), float(g) if pi >= 0.5 else None) for pi, g in zip(p, gsd, strict=True)]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_embedder"] = None  # Dask workers rebuild it (and share the disk cache)
        return state

    def _named_stages(self) -> list[tuple[str, LinearStage]]:
        out = [("stage1", self.stage1), ("stage2", self.stage2)]
        if self.base1 is not None and self.base2 is not None:
            out += [("base1", self.base1), ("base2", self.base2)]
        return out

    def save(self, out_dir: str | Path) -> Path:
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        write_stage_arrays(d, self._named_stages())
        meta = {
            **{k: v for k, v in self.meta.items() if k not in ("dir", "weights_sha256")},
            "format_version": FORMAT_VERSION,
            "embedder": self.embedder_name,
            "embedder_id": self.embedder_id,
            "labels_sha256": self.labels_sha256,
            **{
                f"{name}_{f}": getattr(st, f)
                for name, st in self._named_stages()
                for f in ("C", "gamma", "prior_weight", "input_dims")
            },
            "gsd_classes": list(GSD_CLASSES),
            "variant": self.variant,
            "features": _feature_text(self.variant),
            "priors": None if self.priors is None else self.priors.to_json(),
        }
        write_json(d / META_FILE, meta)
        return d

def load_model(
    model_dir: str | Path, labels: LabelSet | None = None, cache_path: str | Path | None = None
) -> TwoStageModel:
    """Load a saved model; warns when it was trained on a different labels file."""
    d = Path(model_dir)
    meta, stages, priors = read_model_files(d)
    variant = str(meta["variant"])
    if labels is not None and labels.sha256 != meta["labels_sha256"]:
        warnings.warn(
            f"tag model in {d} was trained on another labels file (sha256 {meta['labels_sha256'][:12]}, now "
            f"{labels.sha256[:12]}); labelled tags still use the labels, retrain to refresh the model",
            stacklevel=2,
        )
    meta["dir"] = str(d)
    from pipeline.identity import folder_identity

    # A build's identity includes the weights, so a retrained model is never mixed into a resume.
    meta["weights_sha256"] = folder_identity(d, [META_FILE, MODEL_FILE])
    return TwoStageModel(
        embedder_name=meta["embedder"],
        embedder_id=meta["embedder_id"],
        labels_sha256=meta["labels_sha256"],
        stage1=stages["stage1"],
        stage2=stages["stage2"],
        variant=variant,
        priors=priors,
        base1=stages.get("base1"),
        base2=stages.get("base2"),
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
    variant: str = DEFAULT_VARIANT,
) -> TwoStageModel:
    """Fit both stages on every labelled tag (stage 2 on the groundable ones)."""
    say = progress or (lambda _m: None)
    check_variant(variant)
    ts = training_set(labels)
    emb = make_embedder(embedder_name, cache_path)
    say(f"embedding {len(ts.texts)} tag texts with {emb.id}")
    X = featurize(emb, ts.pairs, value="value" in variant)
    g = ts.groundable
    use_prior = "prior" in variant
    say("fitting the stages (groundable; max GSD class)")
    s1, s2, base = fit_stages(X, ts.pairs, g, ts.gsd_class, seed, kernel, variant)
    b1, b2 = base if base is not None else (None, None)
    priors = KeyPriors.from_rows(ts.pairs, g, ts.gsd_class, PRIOR_SMOOTHING) if use_prior else None
    m = TwoStageModel(
        embedder_name,
        emb.id,
        labels.sha256,
        s1,
        s2,
        variant=variant,
        priors=priors,
        base1=b1,
        base2=b2,
        cache_path=None if cache_path is None else str(cache_path),
    )
    m._embedder = emb
    p, gsd = m.predict_embedded(X, m.prior_features(ts.pairs))
    m.meta = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "labels_file": labels.origin,
        "n_labels": len(labels),
        "n_texts": len(ts.texts),
        "n_groundable": int(g.sum()),
        "embedding_dim": int(X.shape[1]),
        "seed": seed,
        "kernel": kernel,
        "prior_smoothing": PRIOR_SMOOTHING if use_prior else None,
        "versions": _versions(),
        "metrics": {
            "train_fit": {  # resubstitution (priors see the row's own label): an upper bound, not an estimate
                "stage1_accuracy": float(np.mean((p >= 0.5) == g)),
                "stage2_accuracy": float(np.mean(np.array([GSD_CLASSES.index(x) for x in gsd[g]]) == ts.gsd_class[g])),
            },
        },
    }
    return m


__all__ = [
    "CS",
    "DEFAULT_KERNEL",
    "DEFAULT_VARIANT",
    "FORMAT_VERSION",
    "INNER_FOLDS",
    "KERNELS",
    "META_FILE",
    "MODEL_FILE",
    "PRIOR_SMOOTHING",
    "RBF_COMPONENTS",
    "RBF_GAMMA",
    "VARIANTS",
    "LinearStage",
    "PriorInput",
    "TrainingSet",
    "TwoStageModel",
    "check_variant",
    "cross_validate",
    "featurize",
    "fit_stage",
    "fit_stages",
    "key_text",
    "load_model",
    "predict_gated",
    "prior_columns",
    "seen_rows",
    "tag_text",
    "train",
    "training_set",
    "value_text",
    "write_json",
]
