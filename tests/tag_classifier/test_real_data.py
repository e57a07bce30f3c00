"""The labels against every distinct tag of the real Helsinki extract (skips without ../shared/data)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tag_classifier.labels import load_labels
from tag_classifier.visibility import load_visibility


@pytest.fixture(scope="module")
def helsinki_tags(shared_data: Path) -> Counter[tuple[str, str]]:
    import osmium

    counts: Counter[tuple[str, str]] = Counter()
    for obj in osmium.FileProcessor(str(shared_data / "osm" / "helsinki.osm.pbf")):
        for t in obj.tags:
            counts[(t.k, t.v)] += 1
    return counts


@pytest.mark.shared_data
def test_labels_cover_most_real_tags(helsinki_tags: Counter[tuple[str, str]]) -> None:
    labels = load_labels()
    assert len(helsinki_tags) > 5000
    covered = sum(labels.lookup(k, v) is not None for k, v in helsinki_tags)
    assert covered / len(helsinki_tags) >= 0.9, f"only {covered} of {len(helsinki_tags)} distinct tags labelled"


@pytest.mark.shared_data
def test_real_names_never_visible_and_buildings_always(helsinki_tags: Counter[tuple[str, str]]) -> None:
    vis = load_visibility()
    names = {(k, v) for k, v in helsinki_tags if k == "name" or k.startswith(("name:", "addr:"))}
    gone = {"proposed", "demolished", "razed"}  # lifecycle values: not on the ground
    buildings = {(k, v) for k, v in helsinki_tags if k == "building" and v not in gone}
    assert len(names) > 500 and len(buildings) > 5
    assert vis.visible_tags(dict(names), None) == {}  # dict() keeps one value per key: still many keys
    for k, v in names:
        assert vis.visible_tags({k: v}, None) == {}, (k, v)
    for k, v in buildings:
        assert vis.visible_tags({k: v}, 0.5) == {k: v}, (k, v)  # sheds and kiosks need 0.6
