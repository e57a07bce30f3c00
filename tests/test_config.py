from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipeline.config import BuildConfig, load_config, preset_names, redact
from pipeline.errors import ConfigError, InputFileError


def test_presets_load_and_differ() -> None:
    assert {"default", "tiny"} <= set(preset_names())
    default, tiny = load_config(), load_config(preset="tiny")
    assert isinstance(default, BuildConfig)
    assert tiny.planner.tile_px_max < default.planner.tile_px_max
    assert default.semantic() != tiny.semantic()


def test_user_yaml_layers_over_preset_and_overrides_win(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("seed: 5\nplanner:\n  tile_px_min: 100\n")
    cfg = load_config(p, seed=9, max_objects=None)
    assert cfg.seed == 9  # CLI override beats the file
    assert cfg.planner.tile_px_min == 100
    assert cfg.planner.tile_px_max == 512  # untouched preset value


def test_unknown_key_is_named(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("planner:\n  tile_size: 3\n")
    with pytest.raises(ConfigError, match=r"planner\.tile_size"):
        load_config(p)


def test_wrong_type_and_bad_yaml(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("seed: abc\n")
    with pytest.raises(ConfigError, match="seed"):
        load_config(p)
    p.write_text("seed: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_missing_config_and_unknown_preset(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"nope\.yaml"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config(preset="gigantic")


def test_redact_hides_secret_looking_values() -> None:
    data = {
        "ee": {"private_key": "abc", "service_account": "x@y"},
        "flickr_api_key": "k",
        "list": [{"token": "t"}],
    }
    red = redact(data)
    assert red["ee"]["private_key"] == "***"
    assert red["flickr_api_key"] == "***"
    assert red["list"][0]["token"] == "***"
    assert red["ee"]["service_account"] == "x@y"
    # Names are matched whole (or as a _suffix), never as substrings.
    ordinary = {"uninteresting_keys": ["source"], "max_tokens": 5, "keys": ["a"], "monkey": "m"}
    assert redact(ordinary) == ordinary


@pytest.mark.parametrize(
    ("yaml_text", "key", "value"),
    [
        ("planner:\n  margin_frac: 1.5\n", "planner.margin_frac", "1.5"),
        ("caption:\n  max_surrounding: -1\n", "caption.max_surrounding", "-1"),
        ("shards:\n  shard_size: 0\n", "shards.shard_size", "0"),
        ("shards:\n  jpeg_quality: 101\n", "shards.jpeg_quality", "101"),
        ("imagery:\n  max_nodata_frac: 2\n", "imagery.max_nodata_frac", "2"),
        ("imagery:\n  choose: best\n", "imagery.choose", "'best'"),
        ("osm:\n  overpass:\n    attempts: 0\n", "osm.overpass.attempts", "0"),
        ("max_objects: 0\n", "max_objects", "0"),
        ("planner:\n  tile_px_min: 600\n", "planner.tile_px_max", "512"),
    ],
)
def test_out_of_range_values_fail_naming_key_value_and_range(
    tmp_path: Path, yaml_text: str, key: str, value: str
) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    text = str(info.value)
    assert f"'{key}'" in text and f"= {value}" in text and ("must" in text), text
    assert "\n" not in text  # one line


def test_semantic_config_leaves_out_operational_settings() -> None:
    base = load_config()
    moved = base.replace(osm=dataclasses.replace(base.osm, overpass=base.osm.overpass.replace(
        cache_dir="/elsewhere", slots_per_endpoint=7, endpoints=("https://mirror.example/api",))))
    assert moved.semantic() == base.semantic()
    changed = base.replace(osm=dataclasses.replace(base.osm, uninteresting_keys=("created_by",)))
    assert changed.semantic() != base.semantic()
    assert changed.semantic()["osm"]["uninteresting_keys"] == ["created_by"]  # unredacted


def test_overpass_settings_come_from_yaml(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("osm:\n  overpass:\n    endpoints: [https://example.org/api/interpreter]\n"
                 "    slots_per_endpoint: 1\n    limits:\n      timeout_s: 25\n")
    ov = load_config(p).osm.overpass
    assert ov.endpoints == ("https://example.org/api",)  # normalised
    assert ov.slots_per_endpoint == 1 and ov.limits.timeout_s == 25
    assert ov.attempts == 5  # preset value kept
    p.write_text("osm:\n  overpass:\n    endpoints: [ftp://x]\n")
    with pytest.raises(ValueError, match="Overpass endpoint"):
        load_config(p)
