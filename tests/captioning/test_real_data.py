"""Captions and the overlay on real OSM extracts from ``../shared/data`` (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import shapely
from shapely.geometry import box

from captioning.assemble import caption_multi, caption_single, humanise_value
from captioning.overlay import Overlay
from captioning.rules import default_rules
from pipeline.records import OsmObject

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def helsinki(shared_data: Path) -> list[OsmObject]:
    from pipeline.osm import make_osm_source

    path = shared_data / "osm" / "helsinki.osm.pbf"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return [o for o in make_osm_source(str(path)).objects() if o.ok]


def test_overlay_matches_brute_force_on_helsinki(helsinki: list[OsmObject]) -> None:
    ov = Overlay(helsinki)
    geoms = [o.geometry for o in helsinki]
    d = 0.0009  # about 100 m x 50 m at 60 N
    for obj in helsinki[::500]:
        c = obj.geometry.centroid  # type: ignore[union-attr]
        tile = box(c.x - d, c.y - d / 2, c.x + d, c.y + d / 2)
        got = ov.around(obj, tile, 100_000)
        hit = shapely.intersects(geoms, tile)
        want = {o.key for o, h in zip(helsinki, hit, strict=True) if h and o.key != obj.key}
        assert {o.key for o in got} == want
        assert len(got) == len(want)  # no object twice
        assert [o.key for o in ov.around(obj, tile, 5)] == [o.key for o in got[:5]]


def test_real_captions_are_clean(helsinki: list[OsmObject]) -> None:
    from tag_classifier import visibility
    vis = visibility.load_visibility()
    rules = default_rules()
    n_captioned = 0
    for obj in helsinki:
        visible = vis.visible_tags(obj.tags, 0.3)
        single = caption_single(visible)
        multi = caption_multi(visible, [])
        if not visible:
            assert single == multi == ""
            continue
        captionable = {k: v for k, v in visible.items() if not rules.never_captioned(k)}
        assert bool(single) == bool(captionable), visible  # labels and never_caption.csv agree
        n_captioned += bool(single)
        words = set(single.replace(",", " ").split())
        assert "_" not in single and ":" not in single
        assert not {"yes", "true", "false"} & words, visible
        # names, addresses, refs never leak (unless a visible tag says the same words)
        said = " ".join(humanise_value(v) for v in captionable.values())
        for key, value in obj.tags.items():
            text = humanise_value(value)
            if rules.never_captioned(key) and len(text) > 3 and text not in said:
                assert text not in single, (key, value, single)
    assert n_captioned > 1000
