"""Tag visibility from the curated labels, with the trained model for tags the labels miss.

:class:`LabelVisibility` implements :class:`pipeline.seams.TagVisibility`. Heavy libraries
(torch, sentence-transformers, scikit-learn) are imported only when a model is loaded, so the
build and the caption CLI can import this module cheaply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from pipeline.seams import TagVisibility
from tag_classifier.labels import MAX_TAG_PART, LabelSet, load_labels

# Keys that say what an object *is*, most specific first. The object's main tag is its first
# groundable tag in this order (building=yes + amenity=school is a building; landuse=farmland +
# crop=cotton is farmland); objects with none of these fall back to their coarsest groundable tag.
PRIMARY_KEYS: tuple[str, ...] = (
    "building",
    "highway",
    "railway",
    "aeroway",
    "aerialway",
    "waterway",
    "water",
    "natural",
    "landuse",
    "landcover",
    "leisure",
    "amenity",
    "man_made",
    "power",
    "barrier",
    "military",
    "tourism",
    "historic",
    "place",
    "public_transport",
    "emergency",
    "golf",
    "playground",
    "shop",
    "craft",
    "office",
    "building:part",
    "sport",
)
_PRIMARY_RANK = {k: i for i, k in enumerate(PRIMARY_KEYS)}
_MODEL_CACHE_MAX = 200_000  # distinct unlabelled tags remembered per process


class TagPredictor(Protocol):
    """What the visibility seam needs from a trained model (see tag_classifier.model)."""

    def describe(self) -> dict[str, Any]: ...

    def predict_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[bool, float, float | None]]:
        """Per ``(key, value)``: (groundable, p_groundable, max_gsd or None)."""
        ...


def _valid(key: object, value: object) -> bool:
    # Per-object data must never crash a build: malformed tags are simply not visible.
    return (
        isinstance(key, str)
        and isinstance(value, str)
        and 0 < len(key) <= MAX_TAG_PART
        and 0 < len(value) <= MAX_TAG_PART
    )


class LabelVisibility:
    """Visible iff labelled groundable (exact row, then ``key=*``, then prefix) and fine enough.

    With a ``model``, tags no label row matches are decided by the model; without one they are
    dropped.
    """

    def __init__(self, labels: LabelSet | None = None, model: TagPredictor | None = None) -> None:
        self.labels = labels if labels is not None else load_labels()
        self.model = model
        self._predicted: dict[tuple[str, str], float | None] = {}

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "labels+model" if self.model is not None else "labels",
            "labels_file": self.labels.origin,
            "labels_sha256": self.labels.sha256,
            "n_labels": len(self.labels),
            "model": None if self.model is None else self.model.describe(),
        }

    def _decide(self, pairs: list[tuple[str, str]]) -> list[float | None]:
        """max_gsd per tag (None: not groundable), labels first, model for the rest in one batch."""
        out: list[float | None] = []
        unknown: dict[tuple[str, str], list[int]] = {}  # not labelled, not yet predicted
        for i, (key, value) in enumerate(pairs):
            lab = self.labels.lookup(key, value)
            if lab is not None:
                out.append(lab.max_gsd if lab.groundable else None)
            elif self.model is None:
                out.append(None)  # labels only: unlabelled tags are dropped
            elif (key, value) in self._predicted:
                out.append(self._predicted[(key, value)])
            else:
                out.append(None)
                unknown.setdefault((key, value), []).append(i)
        if unknown and self.model is not None:
            todo = list(unknown)
            if len(self._predicted) + len(todo) > _MODEL_CACHE_MAX:
                self._predicted.clear()
            for pair, (g, _p, gsd) in zip(todo, self.model.predict_pairs(todo), strict=True):
                self._predicted[pair] = gsd if g else None
                for i in unknown[pair]:
                    out[i] = self._predicted[pair]
        return out

    def prime(self, tag_dicts: Iterable[Mapping[str, str]]) -> int:
        """Decide every distinct unlabelled tag of ``tag_dicts`` in one model batch; returns how many.

        Optional speed-up for callers about to ask about many objects: one embedding batch
        instead of one small call per object (about 6x faster on a cold embedding cache).
        """
        if self.model is None:
            return 0
        todo: dict[tuple[str, str], None] = {}
        for tags in tag_dicts:
            for k, v in tags.items():
                if _valid(k, v) and (k, v) not in self._predicted and self.labels.lookup(k, v) is None:
                    todo[(k, v)] = None
        if todo:
            self._decide(list(todo))
        return len(todo)

    def visible_tags(self, tags: Mapping[str, str], gsd: float | None) -> dict[str, str]:
        pairs = [(k, v) for k, v in tags.items() if _valid(k, v)]
        decided = self._decide(pairs)
        return {
            k: v
            for (k, v), mg in zip(pairs, decided, strict=True)
            if mg is not None and (gsd is None or gsd <= mg + 1e-9)
        }

    def max_gsd(self, tags: Mapping[str, str]) -> float | None:
        pairs = [(k, v) for k, v in tags.items() if _valid(k, v)]
        decided = self._decide(pairs)
        ground = [(k, mg) for (k, _v), mg in zip(pairs, decided, strict=True) if mg is not None]
        if not ground:
            return None
        ranked = [(_PRIMARY_RANK[k], mg) for k, mg in ground if k in _PRIMARY_RANK]
        if ranked:
            return min(ranked)[1]
        return max(mg for _k, mg in ground)


def load_visibility(model_dir: str | Path | None = None, embedder: str = "minilm") -> TagVisibility:
    """Labels only when ``model_dir`` is None; labels plus the trained model in ``model_dir`` otherwise.

    ``model_dir="auto"``: the default model for these labels, trained on first need and cached
    (:mod:`tag_classifier.auto_model`) on ``embedder`` (a concrete name: resolve ``auto`` first).
    The model must have been trained on the same labels file it is used with (checked by hash).
    """
    labels = load_labels()
    if model_dir is None:
        return LabelVisibility(labels)
    if str(model_dir) == "auto":
        from tag_classifier.auto_model import AutoModel

        return LabelVisibility(labels, model=AutoModel(labels, embedder=embedder))
    from tag_classifier.model import load_model  # heavy: numpy + the embedder on first use

    model = load_model(model_dir, labels=labels)
    return LabelVisibility(labels, model=model)
