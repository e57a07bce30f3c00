"""Tag features for the two-stage model: the texts embedded per tag, the feature variants, the
per-key label priors' input, and the labelled training set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.errors import BadInputError
from tag_classifier.embedders import TextEmbedder
from tag_classifier.labels import GSD_CLASSES, WILDCARD, LabelSet
from tag_classifier.priors import KeyPriors

# Feature variants. "emb": [embed("key value"), embed("key")] (format 2's model); "emb+value" adds
# embed(value). "emb+prior": tags whose key or key family has labelled rows get stage 1 with the
# per-key label priors of tag_classifier.priors appended (counted from training rows only,
# leave-one-out); tags whose key and family were never labelled get the plain "emb" stages (the
# "base" stages). "emb+prior+value": the same, but the base stages are "emb+value"'s.
VARIANTS: tuple[str, ...] = ("emb", "emb+value", "emb+prior", "emb+prior+value")

DEFAULT_VARIANT = "emb"

PRIOR_WEIGHT = 1.0  # scale of the prior features next to the kernel features

PRIOR_SMOOTHING = 3.0  # pseudo-rows pulling a key's share toward the global one

# Stage 2 without priors: on the development seeds (1, 2) the GSD-class prior cost 0.3-1.2 points
# of exact and within-one-class accuracy.
PRIOR_STAGE2 = False

def prior_columns(P: np.ndarray) -> np.ndarray:
    """The model's prior inputs: the smoothed shares and means, not the "unseen" flags.

    Flags were tried as inputs: the rows that read as unseen in training are singleton keys
    (mostly ``key=*`` negatives such as ``phone=*``), so the model learnt "unseen → not
    groundable" and failed on held-out key families. The flags gate instead (:func:`seen_rows`).
    """
    return P[:, 0::2]

def seen_rows(P: np.ndarray) -> np.ndarray:
    """Rows whose key or key family has labelled rows in the prior table (bool)."""
    return (P[:, 1] == 0) | (P[:, 3] == 0)

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

def value_text(key: str, value: str) -> str:
    """The value alone in words; a ``key=*`` row (no value) reads as its key."""
    if value == WILDCARD:
        return key_text(key)
    return value.replace("_", " ").replace(";", ", ").strip() or key_text(key)

def featurize(embedder: TextEmbedder, pairs: Sequence[tuple[str, str]], value: bool = False) -> np.ndarray:
    """``[embed("key value"), embed("key")]`` per tag (plus ``embed(value)`` with ``value``), float32."""
    full = embedder.embed([tag_text(k, v) for k, v in pairs])
    keys = embedder.embed([key_text(k) for k, _v in pairs])
    parts = [full, keys]
    if value:
        parts.append(embedder.embed([value_text(k, v) for k, v in pairs]))
    return np.hstack(parts).astype(np.float32)

def check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise BadInputError(f"unknown feature variant {variant!r}; use one of {VARIANTS}")
    return variant

@dataclass
class PriorInput:
    """The training rows a stage's priors are counted from; ``rows`` maps the stage's X rows into them."""

    pairs: list[tuple[str, str]]
    groundable: np.ndarray
    gsd_class: np.ndarray
    rows: np.ndarray
    smoothing: float = PRIOR_SMOOTHING
    weight: float = PRIOR_WEIGHT

    def table(self, leave_out: np.ndarray | None = None) -> KeyPriors:
        keep = np.ones(len(self.pairs), bool)
        if leave_out is not None:
            keep[self.rows[leave_out]] = False
        idx = np.flatnonzero(keep)
        return KeyPriors.from_rows(
            [self.pairs[i] for i in idx], self.groundable[idx], self.gsd_class[idx], self.smoothing
        )

    def loo(self, table: KeyPriors, which: np.ndarray) -> np.ndarray:
        """Features of stage rows ``which`` that are in ``table``: their own labels taken out."""
        r = self.rows[which]
        return prior_columns(table.features([self.pairs[i] for i in r], self.groundable[r], self.gsd_class[r]))

    def unseen(self, table: KeyPriors, which: np.ndarray) -> np.ndarray:
        """Features of stage rows ``which`` that are not in ``table`` (as at prediction time)."""
        return prior_columns(table.features([self.pairs[i] for i in self.rows[which]]))

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

def _feature_text(variant: str) -> str:
    parts = ["embed('key value')", "embed('key')"] + (["embed('value')"] if "value" in variant else [])
    text = f"concat({', '.join(parts)})"
    return text + " + per-key label priors (tag_classifier.priors)" if "prior" in variant else text

def _prior_input(
    pairs: list[tuple[str, str]], groundable: np.ndarray, gsd_class: np.ndarray, rows: np.ndarray | None
) -> PriorInput:
    r = np.arange(len(pairs)) if rows is None else rows
    return PriorInput(pairs, groundable, gsd_class, r, PRIOR_SMOOTHING, PRIOR_WEIGHT)
