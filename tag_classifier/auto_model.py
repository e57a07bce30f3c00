"""The build's default model for unlabelled tags: trained once on first need, then cached.

``skyscript build`` decides tags the labels do not cover with the two-stage model. Users
should not have to train it by hand first, and builds whose tags are all labelled should
not pay for loading torch at all — so this predictor does nothing until a tag actually
needs the model, then loads (or trains, ~1 min on a CPU) the MiniLM model for the current
labels file under ``$SKYSCRIPT_CACHE/models``. A file lock keeps parallel workers from
training it twice.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock

from pipeline.cache import cache_dir
from tag_classifier.embedders import DEFAULT_EMBEDDER
from tag_classifier.labels import LabelSet

AUTO = "auto"


def default_model_dir(labels: LabelSet, embedder: str = DEFAULT_EMBEDDER) -> Path:
    """One folder per (embedder, model format, labels file): editing the labels, or a new model
    format, retrains on next use instead of failing on an old cached model."""
    from tag_classifier.persistence import FORMAT_VERSION  # numpy only; no torch or scikit-learn

    return cache_dir("models") / f"tags-{embedder}-v{FORMAT_VERSION}-{labels.sha256[:12]}"


class AutoModel:
    """A :class:`tag_classifier.visibility.TagPredictor` that trains/loads on first prediction."""

    def __init__(self, labels: LabelSet, model_dir: Path | None = None, embedder: str = DEFAULT_EMBEDDER) -> None:
        self.labels = labels
        self.configured = embedder  # "auto" is resolved on first need (resolve_auto), never before
        self.embedder = embedder
        self.reason = ""  # why "auto" chose what it chose (for run.json), once decided
        self._dir = model_dir
        self._model: Any = None

    @property
    def dir(self) -> Path:
        return self._dir or default_model_dir(self.labels, self.embedder)

    def resolve(self) -> str:
        """The concrete embedder (deciding ``auto`` now, once: CLIP ViT-L/14 if available, else MiniLM)."""
        if self.embedder == AUTO:
            from tag_classifier.embedders import resolve_auto

            decision = resolve_auto()
            self.embedder, self.reason = decision.name, decision.reason
            print(f"tag classifier embedder: {decision.reason}", file=sys.stderr, flush=True)
        return self.embedder

    def describe(self) -> dict[str, Any]:
        # Known before any training, so a build's fingerprint does not depend on whether it ran.
        from tag_classifier.persistence import FORMAT_VERSION

        # The auto model is a pure function of (embedder, model format, labels): those identify it.
        return {"kind": AUTO, "embedder": self.configured, "format": FORMAT_VERSION,
                "labels_sha256": self.labels.sha256}

    def _ensure(self) -> Any:
        if self._model is None:
            from tag_classifier.model import META_FILE, load_model, train

            self.resolve()
            self.dir.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(self.dir.with_suffix(".lock"))):  # one trainer; the others wait, then load
                if not (self.dir / META_FILE).is_file():
                    print(f"training the default tag classifier for unlabelled tags (once, about a minute); "
                          f"cached in {self.dir}", file=sys.stderr, flush=True)
                    train(self.labels, embedder_name=self.embedder).save(self.dir)
            self._model = load_model(self.dir, labels=self.labels)
        return self._model

    def predict_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[bool, float, float | None]]:
        return self._ensure().predict_pairs(pairs)

    def __getstate__(self) -> dict[str, Any]:
        # Workers load their own model (and share the disk cache).
        return {"labels": self.labels, "_dir": self._dir, "configured": self.configured, "embedder": self.embedder,
                "reason": self.reason, "_model": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
