"""LabelVisibility: the TagVisibility seam from labels (and a model for unlabelled tags)."""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from pipeline.seams import TagVisibility
from tag_classifier.visibility import LabelVisibility, load_visibility


def test_is_a_tag_visibility_and_describes_itself() -> None:
    v = load_visibility()
    assert isinstance(v, TagVisibility)
    d = v.describe()
    assert d["kind"] == "labels" and d["n_labels"] >= 2000 and len(d["labels_sha256"]) == 64


def test_quarry_keeps_visible_tags_and_drops_names() -> None:
    v = load_visibility()
    tags = {"landuse": "quarry", "resource": "bauxite", "name": "Big pit", "name:fi": "Iso", "addr:city": "X"}
    assert v.visible_tags(tags, None) == {"landuse": "quarry", "resource": "bauxite"}
    assert v.visible_tags(tags, 10.0) == {"landuse": "quarry", "resource": "bauxite"}
    assert v.visible_tags(tags, 30.0) == {}
    assert v.max_gsd(tags) == 10.0


def test_gsd_threshold_per_tag() -> None:
    v = load_visibility()
    tags = {"power": "minor_line", "cables": "3", "voltage": "16000"}
    assert v.visible_tags(tags, 0.3) == tags
    assert v.visible_tags(tags, 0.6) == tags
    assert v.visible_tags(tags, 1.0) == {}
    bench = {"amenity": "bench", "backrest": "yes"}
    assert v.visible_tags(bench, 0.1) == {"amenity": "bench"}
    assert v.visible_tags(bench, 0.3) == {}


def test_max_gsd_uses_the_main_tag() -> None:
    v = load_visibility()
    assert v.max_gsd({"building": "yes", "amenity": "school", "roof:shape": "gabled"}) == 1.0
    assert v.max_gsd({"landuse": "farmland", "crop": "cotton"}) == 10.0
    assert v.max_gsd({"amenity": "bench"}) == 0.1
    assert v.max_gsd({"roof:shape": "flat", "crop": "wheat"}) == 10.0  # no primary key: coarsest
    assert v.max_gsd({"name": "x", "shop": "bakery"}) is None
    assert v.max_gsd({}) is None


def test_unlabelled_and_malformed_tags_are_dropped_without_error() -> None:
    v = load_visibility()
    tags: dict[Any, Any] = {"zzz_unknown": "1", "": "x", "k": "", "a" * 300: "b", 5: "x", "building": "y" * 300}
    assert v.visible_tags(tags, None) == {}
    assert v.max_gsd(tags) is None


class _FakeModel:
    """A predictor double recording what it was asked (the real one is tested in test_model)."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[str, str]]] = []

    def describe(self) -> dict[str, Any]:
        return {"kind": "fake"}

    def predict_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[bool, float, float | None]]:
        self.calls.append(list(pairs))
        return [
            (k.startswith("vis"), 0.9 if k.startswith("vis") else 0.1, 1.0 if k.startswith("vis") else None)
            for k, _v in pairs
        ]


def test_model_decides_only_unlabelled_tags_once() -> None:
    m = _FakeModel()
    v = LabelVisibility(model=m)
    tags = {"name": "x", "building": "yes", "vis_thing": "a", "hidden_thing": "b"}
    assert v.visible_tags(tags, 0.5) == {"building": "yes", "vis_thing": "a"}
    assert v.visible_tags(tags, 5.0) == {}
    assert m.calls == [[("vis_thing", "a"), ("hidden_thing", "b")]]  # cached after the first call
    assert v.describe()["kind"] == "labels+model"


def test_pickles_for_dask_workers() -> None:
    v = load_visibility()
    w = pickle.loads(pickle.dumps(v))
    assert w.visible_tags({"natural": "tree"}, 0.5) == {"natural": "tree"}


def test_import_stays_light() -> None:
    code = (
        "import sys, tag_classifier.visibility as v; v.load_visibility();"
        "bad=[m for m in ('torch','sklearn','open_clip','sentence_transformers') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
