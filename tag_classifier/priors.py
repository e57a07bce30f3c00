"""Per-key label priors: how often a tag's key (and its key family) is groundable, and how fine.

A tag's key says much of its label (``shop=*`` values are mostly not visible, ``building=*``
values mostly are). :class:`KeyPriors` counts, per key and per key family (the part before the
first ``:``), the labelled rows, the groundable ones and their GSD classes, and turns them into
smoothed shares (pulled toward the global share for keys with few rows) plus "unseen" flags.

Honesty rules, enforced by the callers in :mod:`tag_classifier.model`:

* the counts come from training rows only (inside every outer *and* inner CV fold);
* a training row's own label is subtracted from its counts (leave-one-out), so a row never
  sees itself; a key whose only row is this one then reads as unseen, which is what the model
  sees at prediction time for a new key;
* at prediction time the counts come from all labels.

Keys are looked up like the labels look them up: the exact key, then the longest ``prefix:*``
row (``name:fi`` → ``name:*``). The family level uses the key's root (``addr`` for
``addr:street``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tag_classifier.labels import GSD_CLASSES, WILDCARD

N_FEATURES = 8
FEATURE_NAMES: tuple[str, ...] = (
    "key_groundable_logit",
    "key_unseen",
    "family_groundable_logit",
    "family_unseen",
    "key_gsd_mean",
    "key_gsd_unseen",
    "family_gsd_mean",
    "family_gsd_unseen",
)
_TOP = float(len(GSD_CLASSES) - 1)


def family_of(key: str) -> str:
    return key.split(":")[0]


@dataclass
class KeyPriors:
    """Counts per key and per family: ``[rows, groundable rows, GSD rows, sum of GSD class index]``."""

    smoothing: float
    keys: dict[str, list[float]] = field(default_factory=dict)
    families: dict[str, list[float]] = field(default_factory=dict)
    total: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])

    @classmethod
    def from_rows(
        cls, pairs: Sequence[tuple[str, str]], groundable: np.ndarray, gsd_class: np.ndarray, smoothing: float
    ) -> KeyPriors:
        p = cls(smoothing=float(smoothing))
        for (k, _v), g, c in zip(pairs, groundable, gsd_class, strict=True):
            row = _counts(bool(g), int(c))
            for table, name in ((p.keys, k), (p.families, family_of(k))):
                acc = table.setdefault(name, [0.0, 0.0, 0.0, 0.0])
                for i in range(4):
                    acc[i] += row[i]
            for i in range(4):
                p.total[i] += row[i]
        return p

    def _prefix_counts(self, key: str) -> list[float] | None:
        """Counts of the longest ``prefix:*`` row strictly shorter than ``key`` (as LabelSet.lookup)."""
        base = key[: -len(":" + WILDCARD)] if key.endswith(":" + WILDCARD) else key
        parts = base.split(":")
        for n in range(len(parts) - 1, 0, -1):
            hit = self.keys.get(":".join(parts[:n]) + ":" + WILDCARD)
            if hit is not None:
                return hit
        return None

    def features(
        self,
        pairs: Sequence[tuple[str, str]],
        groundable: np.ndarray | None = None,
        gsd_class: np.ndarray | None = None,
    ) -> np.ndarray:
        """``(n, N_FEATURES)`` float32. With labels given, the rows are this table's own training
        rows and each one's label is first taken out of its counts (leave-one-out)."""
        out = np.zeros((len(pairs), N_FEATURES), np.float32)
        m = self.smoothing
        for i, (k, _v) in enumerate(pairs):
            own = [0.0] * 4 if groundable is None else _counts(bool(groundable[i]), int(gsd_class[i]))  # type: ignore[index]
            tot = [a - b for a, b in zip(self.total, own, strict=True)]
            g0 = (tot[1] + 1.0) / (tot[0] + 2.0)  # global shares (Laplace): never 0 or 1
            c0 = (tot[3] + 0.5 * _TOP) / (tot[2] + 1.0) / _TOP
            # A row's own counts are taken out; a key left with no rows falls back, like a new key
            # at prediction time, to its longest prefix row (never to the key itself).
            kc = _minus(self.keys.get(k), own)
            if kc is None or kc[0] <= 0:
                kc = self._prefix_counts(k) or kc
            fc = _minus(self.families.get(family_of(k)), own)
            for j, cnt in ((0, kc), (2, fc)):
                c = [0.0] * 4 if cnt is None else cnt
                share = (c[1] + m * g0) / (c[0] + m)
                out[i, j] = np.log(share / (1.0 - share))
                out[i, j + 1] = float(c[0] <= 0)
                mean = (c[3] / _TOP + m * c0) / (c[2] + m)
                out[i, j + 4] = mean - c0
                out[i, j + 5] = float(c[2] <= 0)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"smoothing": self.smoothing, "keys": self.keys, "families": self.families, "total": self.total}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> KeyPriors:
        return cls(
            smoothing=float(d["smoothing"]),
            keys={str(k): [float(x) for x in v] for k, v in d["keys"].items()},
            families={str(k): [float(x) for x in v] for k, v in d["families"].items()},
            total=[float(x) for x in d["total"]],
        )


def _minus(counts: list[float] | None, own: list[float]) -> list[float] | None:
    return None if counts is None else [a - b for a, b in zip(counts, own, strict=True)]


def _counts(groundable: bool, gsd_class: int) -> list[float]:
    has = groundable and gsd_class >= 0
    return [1.0, float(groundable), float(has), float(gsd_class) if has else 0.0]
