"""LabelVisibility.prime: one batched model call for all unlabelled tags, then cache hits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tag_classifier.labels import load_labels
from tag_classifier.visibility import LabelVisibility


class CountingModel:
    def __init__(self) -> None:
        self.calls: list[list[tuple[str, str]]] = []

    def describe(self) -> dict[str, Any]:
        return {"kind": "counting"}

    def predict_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[bool, float, float | None]]:
        self.calls.append(list(pairs))
        return [(k.startswith("zz_visible"), 0.9, 1.0) for k, _v in pairs]


def test_prime_batches_unlabelled_tags_once() -> None:
    model = CountingModel()
    vis = LabelVisibility(load_labels(), model=model)
    objs = [
        {"building": "yes", "zz_visible_thing": "a"},
        {"zz_visible_thing": "a", "zz_hidden_thing": "b"},
        {"name": "Somewhere", "zz_hidden_thing": "b"},
    ]
    assert vis.prime(objs) == 2
    assert len(model.calls) == 1 and sorted(model.calls[0]) == [("zz_hidden_thing", "b"), ("zz_visible_thing", "a")]
    assert vis.visible_tags(objs[0], 0.5) == {"building": "yes", "zz_visible_thing": "a"}
    assert vis.visible_tags(objs[1], 0.5) == {"zz_visible_thing": "a"}
    assert vis.visible_tags(objs[1], 5.0) == {}  # coarser than the predicted max GSD
    assert len(model.calls) == 1  # everything after priming came from the cache
    assert vis.prime(objs) == 0


def test_prime_without_model_is_a_no_op() -> None:
    assert LabelVisibility(load_labels()).prime([{"zz_unknown": "x"}]) == 0
