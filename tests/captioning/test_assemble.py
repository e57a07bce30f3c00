"""Caption assembly: the paper's examples verbatim, ordering, dedupe, safety, real-looking OSM tags."""

from __future__ import annotations

import pytest

from captioning.assemble import caption_multi, caption_single, humanise_key, humanise_value, phrase, tag_phrases
from pipeline.errors import BadInputError

from .examples import PAPER_EXAMPLES, Example


@pytest.mark.parametrize("ex", PAPER_EXAMPLES, ids=lambda e: next(iter(e.tags.items()))[1])
def test_paper_examples_verbatim(ex: Example) -> None:
    if ex.single is not None:
        assert caption_single(ex.tags) == ex.single
    if ex.multi is not None:
        assert caption_multi(ex.tags, ex.surrounding) == ex.multi


def test_humanise() -> None:
    assert humanise_key("plant:output:electricity") == "plant output electricity"
    assert humanise_key("man_made") == "man made"
    assert humanise_value("minor_line") == "minor line"
    assert humanise_value("soccer;basketball") == "soccer and basketball"
    assert humanise_value(" paving__stones ") == "paving stones"
    assert humanise_value("yes;viaduct") == "viaduct"


def test_feature_key_leads_whatever_the_input_order() -> None:
    assert caption_single({"resource": "bauxite", "landuse": "quarry"}) == "landuse of quarry, resource of bauxite"
    # attributes keep their input order (the paper's plant:* tags are not alphabetical)
    assert caption_single({"crop": "cotton", "irrigated": "yes", "landuse": "farmland"}) == (
        "landuse of farmland, crop of cotton, irrigated"
    )
    assert caption_single({"irrigated": "yes", "crop": "cotton", "landuse": "farmland"}) == (
        "landuse of farmland, irrigated, crop of cotton"
    )


def test_feature_keys_rank_among_themselves() -> None:
    # building ranks above amenity in feature_keys.csv: the footprint is what a chip shows
    assert phrase({"amenity": "school", "building": "yes"}) == "building with amenity of school"


@pytest.mark.parametrize(
    ("tags", "single"),
    [
        ({"building": "yes"}, "building"),
        ({"building": "house"}, "house building"),
        ({"building": "apartments", "building:levels": "5"}, "apartment building, 5 levels"),
        (
            {"highway": "residential", "surface": "asphalt", "lanes": "2", "oneway": "yes"},
            "road of residential, asphalt surface, 2 lanes, one way",
        ),
        ({"highway": "service", "service": "parking_aisle", "lanes": "1"}, "road of service, parking aisle, 1 lane"),
        ({"leisure": "pitch", "sport": "soccer"}, "leisure of pitch, sport of soccer"),
        (
            {"building": "yes", "roof:shape": "gabled", "height": "12"},
            "building, gabled roof, height of 12 m",
        ),
        ({"building": "yes", "height": "12 ft"}, "building, height of 12 ft"),
        ({"highway": "street_lamp"}, "street lamp"),
        ({"highway": "primary", "bridge": "yes", "layer": "1"}, "road of primary, bridge"),
        ({"highway": "footway", "footway": "sidewalk", "lit": "no"}, "road of footway, sidewalk"),
        ({"natural": "tree", "leaf_type": "broadleaved"}, "natural tree, leaf type of broadleaved"),
        ({"amenity": "parking", "parking": "surface"}, "amenity of parking, surface parking"),
        ({"man_made": "tower", "tower:type": "communication"}, "man made tower, tower type of communication"),
        ({"railway": "rail", "electrified": "contact_line"}, "railway rail, electrified of contact line"),
    ],
)
def test_real_osm_tags_read_well(tags: dict[str, str], single: str) -> None:
    assert caption_single(tags) == single


@pytest.mark.parametrize("value", ["yes", "Yes", "true", "no", "false"])
@pytest.mark.parametrize("key", ["building", "bridge", "tunnel", "crossing", "surface", "covered", "roof:shape"])
def test_boolean_values_never_show_raw(key: str, value: str) -> None:
    text = caption_single({"highway": "service", key: value})
    words = text.replace(",", " ").lower().split()
    assert not {"yes", "true", "false"} & set(words)
    assert "of no" not in text and not text.endswith(" no")


def test_boolean_multi_values() -> None:
    assert caption_single({"highway": "primary", "bridge": "yes;viaduct"}) == "road of primary, viaduct bridge"
    assert caption_single({"highway": "primary", "bridge": "yes;yes"}) == "road of primary, bridge"
    assert caption_single({"highway": "primary", "lit": "no;yes"}) == "road of primary"


def test_captions_never_describe_absences() -> None:
    assert caption_single({"highway": "residential", "sidewalk": "no"}) == "road of residential"
    # A lone negating tag gives no caption at all (it used to fall back to "no building").
    for tags in ({"building": "no"}, {"park_ride": "no"}, {"amenity": "none"}, {"building:levels": "0"}):
        assert caption_single(tags) == "" and caption_multi(tags, []) == "", tags
    assert caption_multi({"building": "yes"}, [{"building": "no"}, {"lit": "no"}]) == "building"
    # An exact phrase that says something visible keeps the tag: a two-way road, an uncovered one.
    assert caption_single({"highway": "residential", "oneway": "no"}) == "road of residential, two way"
    assert caption_single({"highway": "residential", "bridge": "no"}) == "road of residential"


def test_non_visual_tags_never_appear_even_if_passed() -> None:
    tags = {
        "building": "yes",
        "name": "Stockmann",
        "name:fi": "Stockmann",
        "old_name": "Forum",
        "addr:street": "Aleksanterinkatu",
        "addr:housenumber": "52",
        "ref": "E 12",
        "wikidata": "Q123",
        "website": "https://example.org",
        "source": "survey",
        "note": "check",
        "fixme": "position",
        "operator": "HKL",
        "mml:class": "42211",
        "traffic_sign": "FI:372",
        "description": "a big department store",
    }
    assert caption_single(tags) == "building"
    assert caption_multi({"natural": "tree"}, [tags]) == "natural tree, surrounded by building"


def test_urls_and_free_text_values_are_refused() -> None:
    assert caption_single({"building": "yes", "material": "see http://x.org"}) == "building"
    assert caption_single({"building": "yes", "material": "x" * 65}) == "building"
    assert caption_single({"building": "yes", "material": "brick"}) == "building, material of brick"


def test_plant_source_is_not_mistaken_for_provenance() -> None:
    # never_caption.csv lists source and source:*, not *:source
    assert "plant source of solar" in caption_single({"power": "plant", "plant:source": "solar"})


def test_empty_visible_tags_give_empty_captions() -> None:
    assert caption_single({}) == ""
    assert caption_multi({}, [{"natural": "tree"}]) == ""
    assert caption_single({"name": "Foo"}) == ""
    assert caption_single({"building": "_"}) == ""


def test_dropped_only_tags_fall_back_to_a_plain_phrase() -> None:
    # area=yes and layer=* read as nothing next to other tags, but alone they still say something
    assert caption_single({"highway": "pedestrian", "area": "yes"}) == "road of pedestrian"
    assert caption_single({"area": "yes"}) == "area"
    assert caption_single({"layer": "1"}) == "layer of 1"


def test_duplicate_tag_phrases_within_an_object_are_said_once() -> None:
    assert tag_phrases({"building:part": "yes", "building:part:x": "yes"}) == ["building part", "building part x"]
    assert tag_phrases({"roof:shape": "flat", "roof:colour": "flat"}) == ["flat roof"]


def test_multi_joins_extras_with_with_then_and() -> None:
    tags = {"highway": "residential", "surface": "asphalt", "lanes": "2", "oneway": "yes"}
    assert phrase(tags) == "road of residential with asphalt surface and 2 lanes and one way"
    assert caption_multi(tags, []) == phrase(tags)


def test_multi_dedupes_neighbours_keeping_first_order_and_skips_empty() -> None:
    around = [
        {"building": "yes"},
        {},
        {"name": "only a name"},
        {"natural": "tree"},
        {"building": "yes", "name": "other"},
        {"highway": "footway"},
        {"natural": "tree"},
    ]
    assert caption_multi({"amenity": "fountain"}, around) == (
        "amenity of fountain, surrounded by building; natural tree; road of footway"
    )


def test_multi_keeps_a_neighbour_equal_to_the_object() -> None:
    assert caption_multi({"building": "yes"}, [{"building": "yes"}]) == "building, surrounded by building"


def test_multi_caps_neighbours_after_skipping() -> None:
    around = [{"building": "yes"}, {"building": "yes"}, {"natural": "tree"}, {"highway": "footway"}]
    assert caption_multi({"amenity": "fountain"}, around, max_surrounding=2) == (
        "amenity of fountain, surrounded by building; natural tree"
    )
    assert caption_multi({"amenity": "fountain"}, around, max_surrounding=0) == "amenity of fountain"
    with pytest.raises(BadInputError, match="max_surrounding"):
        caption_multi({"amenity": "fountain"}, around, max_surrounding=-1)


def test_separators_cannot_be_forged_by_values() -> None:
    text = caption_multi({"leisure": "pitch", "sport": "soccer;tennis"}, [{"natural": "tree"}])
    assert text == "leisure of pitch with sport of soccer and tennis, surrounded by natural tree"
    assert text.count("; ") == 0


def test_non_string_values_are_rejected_with_the_tag_named() -> None:
    with pytest.raises(BadInputError, match="cables"):
        caption_single({"power": "line", "cables": 3})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("value", "roof"),
    [("#b4c9b3", "light grey roof"), ("#111111", "black roof"), ("#EDDE10", "yellow roof"), ("#f00", "red roof")],
)
def test_hex_colours_read_as_names(value: str, roof: str) -> None:
    assert caption_single({"building": "yes", "roof:colour": value}) == f"building, {roof}"
