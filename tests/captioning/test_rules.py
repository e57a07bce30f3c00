"""The caption rules files: packaged rules load, malformed rules fail naming file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from captioning.assemble import caption_single
from captioning.rules import ANY, default_rules, load_rules, parse_rules
from pipeline.errors import ConfigError, InputFileError

DATA = Path(__file__).resolve().parents[2] / "captioning" / "data"
PHRASES_HEADER = "key,value,phrase,unit,note\n"
DEFAULT_ROW = "*,*,{key} of {value},,\n*,yes,{key},,\n*,no,,,\n"
FEATURES = "key,note\nbuilding,\n"
NEVER = "pattern,reason\nname,\n"


def test_packaged_rules_load_and_match_the_files() -> None:
    rules = default_rules()
    assert rules.phrases[(ANY, ANY)].phrase == "{key} of {value}"
    assert rules.feature_keys[0] == "building"
    assert rules.never_captioned("name:fi") and rules.never_captioned("addr:street")
    assert not rules.never_captioned("plant:source")
    assert load_rules(DATA) == rules


def test_every_key_template_handles_yes_without_showing_it() -> None:
    rules = default_rules()
    for key, value in rules.phrases:
        if key == ANY or value != ANY:
            continue
        text = caption_single({key: "yes"})
        assert "yes" not in text.split(), (key, text)


def test_custom_rules_folder_changes_captions(tmp_path: Path) -> None:
    (tmp_path / "phrases.csv").write_text(PHRASES_HEADER + DEFAULT_ROW + "crop,*,{value} field,,\n")
    (tmp_path / "feature_keys.csv").write_text("key,note\nlanduse,\n")
    (tmp_path / "never_caption.csv").write_text(NEVER)
    rules = load_rules(tmp_path)
    assert caption_single({"crop": "cotton", "landuse": "farmland"}, rules=rules) == (
        "landuse of farmland, cotton field"
    )


def test_missing_rules_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"phrases\.csv"):
        load_rules(tmp_path)


@pytest.mark.parametrize(
    ("phrases", "match"),
    [
        ("key,value,phrase\n" + DEFAULT_ROW, "header must be"),
        (PHRASES_HEADER + "landuse,*,{key} of {value},,\n", r"default row '\*,\*'"),
        (PHRASES_HEADER + "*,*,{key} of {value},,\n*,no,,,\n", r"default row '\*,yes'"),
        (PHRASES_HEADER + DEFAULT_ROW + "lit,yes,lit {value},,\n", "line 5.*must not show the raw value"),
        (PHRASES_HEADER + DEFAULT_ROW + "crop,*,{colour} crop,,\n", r"line 5.*unknown placeholder"),
        (PHRASES_HEADER + DEFAULT_ROW + "crop,*,{value crop,,\n", "line 5.*not a valid template"),
        (PHRASES_HEADER + DEFAULT_ROW + "crop,*,a,,\ncrop,*,b,,\n", "line 6.*duplicate rule for crop=\\*"),
        (PHRASES_HEADER + DEFAULT_ROW + ",*,a,,\n", "line 5.*must not be empty"),
        (PHRASES_HEADER + DEFAULT_ROW + "crop,*,a,\n", "line 5.*expected 5 columns"),
    ],
)
def test_malformed_phrases_fail_clearly(phrases: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_rules(phrases, FEATURES, NEVER, origin="x")


def test_malformed_feature_keys_and_patterns_fail_clearly() -> None:
    ok = PHRASES_HEADER + DEFAULT_ROW
    with pytest.raises(ConfigError, match=r"feature_keys\.csv line 3.*repeated"):
        parse_rules(ok, "key,note\nbuilding,\nbuilding,\n", NEVER, origin="x")
    with pytest.raises(ConfigError, match=r"never_caption\.csv line 2.*empty pattern"):
        parse_rules(ok, FEATURES, "pattern,reason\n,why\n", origin="x")


def test_without_a_palette_hex_colours_are_left_out(tmp_path: Path) -> None:
    (tmp_path / "phrases.csv").write_text(PHRASES_HEADER + DEFAULT_ROW)
    (tmp_path / "feature_keys.csv").write_text(FEATURES)
    (tmp_path / "never_caption.csv").write_text(NEVER)
    rules = load_rules(tmp_path)
    assert caption_single({"building": "yes", "roof:colour": "#b4c9b3"}, rules=rules) == "building"
    assert caption_single({"roof:colour": "#b4c9b3"}, rules=rules) == ""
    (tmp_path / "colours.csv").write_text("name,hex,note\nteal,#008080,\n")
    rules = load_rules(tmp_path)
    assert caption_single({"roof:colour": "#b4c9b3"}, rules=rules) == "roof colour of teal"


@pytest.mark.parametrize("row", ["teal,008080,", ",#008080,", "teal,#00808,", "teal,#00808g,"])
def test_malformed_palette_fails_clearly(row: str) -> None:
    with pytest.raises(ConfigError, match=r"colours\.csv line 2"):
        parse_rules(PHRASES_HEADER + DEFAULT_ROW, FEATURES, NEVER, origin="x", colours_csv=f"name,hex,note\n{row}\n")


def test_rules_pickle_for_dask_workers() -> None:
    import pickle

    rules = default_rules()
    again = pickle.loads(pickle.dumps(rules))
    assert again == rules
    assert again.never_captioned("addr:street") and again.feature_rank("building") == 0
