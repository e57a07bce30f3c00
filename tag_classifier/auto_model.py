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


def default_model_dir(labels: LabelSet) -> Path:
    """One folder per (embedder, model format, labels file): editing the labels, or a new model
    format, retrains on next use instead of failing on an old cached model."""
    from tag_classifier.persistence import FORMAT_VERSION  # numpy only; no torch or scikit-learn

    return cache_dir("models") / f"tags-{DEFAULT_EMBEDDER}-v{FORMAT_VERSION}-{labels.sha256[:12]}"


class AutoModel:
    """A :class:`tag_classifier.visibility.TagPredictor` that trains/loads on first prediction."""

    def __init__(self, labels: LabelSet, model_dir: Path | None = None) -> None:
        self.labels = labels
        self.dir = model_dir or default_model_dir(labels)
        self._model: Any = None

    def describe(self) -> dict[str, Any]:
        # Known before any training, so a build's fingerprint does not depend on whether it ran.
        from tag_classifier.persistence import FORMAT_VERSION

        # The auto model is a pure function of (embedder, model format, labels): those identify it.
        return {"kind": AUTO, "embedder": DEFAULT_EMBEDDER, "format": FORMAT_VERSION,
                "labels_sha256": self.labels.sha256}

    def _ensure(self) -> Any:
        if self._model is None:
            from tag_classifier.model import META_FILE, load_model, train

            self.dir.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(self.dir.with_suffix(".lock"))):  # one trainer; the others wait, then load
                if not (self.dir / META_FILE).is_file():
                    print(f"training the default tag classifier for unlabelled tags (once, about a minute); "
                          f"cached in {self.dir}", file=sys.stderr, flush=True)
                    train(self.labels).save(self.dir)
            self._model = load_model(self.dir, labels=self.labels)
        return self._model

    def predict_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[bool, float, float | None]]:
        return self._ensure().predict_pairs(pairs)

    def __getstate__(self) -> dict[str, Any]:
        return {"labels": self.labels, "dir": self.dir, "_model": None}  # workers load their own

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
