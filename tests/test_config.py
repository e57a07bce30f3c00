from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import BuildConfig, load_config, preset_names, redact
from pipeline.errors import ConfigError, InputFileError


def test_presets_load_and_differ() -> None:
    assert {"default", "tiny"} <= set(preset_names())
    default, tiny = load_config(), load_config(preset="tiny")
    assert isinstance(default, BuildConfig)
    assert tiny.planner.tile_px_max < default.planner.tile_px_max
    assert default.fingerprint() != tiny.fingerprint()


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
