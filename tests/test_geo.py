from __future__ import annotations

import pytest

from pipeline.errors import BadInputError
from pipeline.geo import BBox, utm_epsg
from pipeline.records import make_key


def test_bbox_parse_roundtrip() -> None:
    b = BBox.parse("32.58, 0.31,32.59,0.32")
    assert b.as_tuple() == (32.58, 0.31, 32.59, 0.32)
    assert b.contains_point(32.585, 0.315)
    assert not b.contains_point(32.6, 0.315)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("170,0,-170,1", "antimeridian"),
        ("0,1,1,0", "south"),
        ("0,0,200,1", "longitudes"),
        ("0,-91,1,1", "latitudes"),
        ("1,2,3", "four"),
        ("a,b,c,d", "numbers"),
    ],
)
def test_bad_bbox_is_explained(text: str, match: str) -> None:
    with pytest.raises(BadInputError, match=match):
        BBox.parse(text)


def test_utm_zone() -> None:
    assert utm_epsg(24.94, 60.17) == 32635
    assert utm_epsg(-122.3, 37.8) == 32610
    assert utm_epsg(151.2, -33.9) == 32756


def test_keys_have_no_dots() -> None:
    assert make_key("way", 123) == "w123"
    assert make_key("node", -5) == "nm5"
    with pytest.raises(ValueError):
        make_key("area", 1)
