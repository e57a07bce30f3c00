"""End-to-end builds whose pixels come from the STAC and Earth Engine fixtures (and from several sources)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.build import BuildInputs, build
from pipeline.config import load_config
from pipeline.errors import BadInputError
from storage import shards as sh
from tests.fakes import FakeArea, make_fake_area
from tests.servers.earth_engine import Asset, EarthEngineServer
from tests.servers.stac_api import Scene, StacServer, write_cog

TOKEN = "fixture-token"


@pytest.fixture(scope="module")
def area(tmp_path_factory: pytest.TempPathFactory) -> tuple[FakeArea, Path]:
    root = tmp_path_factory.mktemp("remote-area")
    area = make_fake_area(root, seed=5)
    cog = write_cog(root / "ortho_cog.tif", area.raster)
    return area, cog


def _config(tmp_path: Path, area: FakeArea, extra: str = "") -> Path:
    w, s, e, n = area.bbox
    (tmp_path / "catalog.yaml").write_text(f"""
collections:
  - {{id: fixture/ortho, source: stac, collection: ortho, gsd: 0.3, bands: ["visual:1", "visual:2", "visual:3"],
      range: [0, 255], coverage: [{w}, {s}, {e}, {n}], pick: most-recent}}
  - {{id: users/me/ortho, source: gee, type: Image, gsd: 0.3, bands: [R, G, B], range: [0, 255],
      coverage: [{w}, {s}, {e}, {n}]}}
{extra}""")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"imagery:\n  catalog: {tmp_path / 'catalog.yaml'}\n  max_nodata_frac: 0.05\n"
                   "caption:\n  unknown_tags: drop\n")
    return cfg


def _check(out: Path, source: str, collection: str) -> list[dict]:
    rows = sh.read_rows(out / "shards").to_pylist()
    ok = [r for r in rows if r["status"] == "ok"]
    assert ok, [r["error_message"] for r in rows]
    for r in rows:
        if r["status"] != "ok":
            assert r["error_code"] in ("nodata", "no_imagery", "too_large", "edge_of_imagery", "no_visible_tags"), r
    samples = list(sh.iter_samples(out / "shards"))
    for s in samples:
        meta = s["json"] if isinstance(s["json"], dict) else json.loads(s["json"])
        assert meta["source"] == source and meta["collection"] == collection
        assert meta["image_id"] and meta["acquired"] and len(meta["transform"]) == 6 and meta["crs"].startswith("EPSG:")
        assert "cloud_cover" in meta and "provenance" in meta  # re-readable: scene ids, window, range
        img = np.asarray(Image.open(__import__("io").BytesIO(s["jpg"])))
        assert img.shape[:2] == (meta["height"], meta["width"])
    return ok


def test_build_from_stac_fixture(area, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, cog = area
    monkeypatch.setenv("SKYSCRIPT_CACHE", str(tmp_path / "cache"))
    with StacServer([Scene("ortho-1", "ortho", "2023-01-05T09:00:00Z", {"visual": cog})]) as srv:
        srv.inject("search", ["429", "503"])
        cfg = load_config(_config(tmp_path, fake), preset="tiny")
        out = tmp_path / "out"
        inputs = BuildInputs(osm=str(fake.osm), imagery=f"stac:{srv.url}", out=str(out))
        summary = build(inputs, cfg, log=lambda m: None)
        assert summary["written"] > 0
        _check(out, "stac", "fixture/ortho")
        run = json.loads((out / "run.json").read_text())
        assert run["sources"]["imagery"]["name"] == "router"


def test_build_from_earth_engine_fixture(area, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, cog = area
    monkeypatch.setenv("SKYSCRIPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SKYSCRIPT_EE_TOKEN", TOKEN)
    with EarthEngineServer([Asset("users/me/ortho", cog, ["R", "G", "B"], "2022-02-02")], token=TOKEN) as srv:
        monkeypatch.setenv("SKYSCRIPT_EE_URL", srv.url)
        cfg = load_config(_config(tmp_path, fake), preset="tiny")
        out = tmp_path / "out"
        summary = build(BuildInputs(osm=str(fake.osm), imagery="gee:my-project", out=str(out)), cfg, log=lambda m: None)
        assert summary["written"] > 0
        _check(out, "gee", "users/me/ortho")
        assert TOKEN not in (out / "run.json").read_text()


def test_build_with_two_sources_prefers_the_finest(area, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, cog = area
    monkeypatch.setenv("SKYSCRIPT_CACHE", str(tmp_path / "cache"))
    with StacServer([Scene("ortho-1", "ortho", "2023-01-05T09:00:00Z", {"visual": cog})]) as srv:
        cfg = load_config(_config(tmp_path, fake), preset="tiny")
        out = tmp_path / "out"
        inputs = BuildInputs(osm=str(fake.osm), imagery=(f"local:{fake.imagery_dir}", f"stac:{srv.url}"), out=str(out))
        build(inputs, cfg, log=lambda m: None)
        rows = pq.read_table(out / "shards" / "00000.parquet").to_pylist()
        assert any(r["status"] == "ok" for r in rows)
        # The local raster and the STAC COG have the same GSD: the local folder is listed first in the
        # candidates' order (catalog order -1), so it wins ties.
        assert srv.hits["search"] == 0 or all(r.get("source") in (None, "local", "stac") for r in rows)


def test_stac_url_without_catalog_entry_is_a_startup_error(area, tmp_path: Path) -> None:
    fake, _cog = area
    cfg = load_config(preset="tiny")
    with pytest.raises(BadInputError, match="no catalog collection is served"):
        build(BuildInputs(osm=str(fake.osm), imagery="stac:http://127.0.0.1:9/x", out=str(tmp_path / "o")), cfg,
              log=lambda m: None)
    assert not (tmp_path / "o" / "shards").exists()


def test_cli_build_repeatable_imagery(area, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    fake, cog = area
    monkeypatch.setenv("SKYSCRIPT_CACHE", str(tmp_path / "cache"))
    for var in ("SKYSCRIPT_EE_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no stored `earthengine authenticate` credentials either
    with StacServer([Scene("ortho-1", "ortho", "2023-01-05T09:00:00Z", {"visual": cog})]) as srv:
        cfg = _config(tmp_path, fake)
        out = tmp_path / "out"
        res = CliRunner().invoke(app, ["build", "--osm", str(fake.osm), "--imagery", f"stac:{srv.url}",
                                       "--imagery", "gee:my-project", "--out", str(out), "--config", str(cfg),
                                       "--preset", "tiny"])
        # gee:my-project needs credentials at start-up: a one-line error, nothing written.
        assert res.exit_code == 2 and "Earth Engine" in res.output and "Traceback" not in res.output
        res = CliRunner().invoke(app, ["build", "--osm", str(fake.osm), "--imagery", f"stac:{srv.url}",
                                       "--out", str(out), "--config", str(cfg), "--preset", "tiny"])
        assert res.exit_code == 0, res.output
        assert json.loads((out / "run.json").read_text())["inputs"]["imagery"] == f"stac:{srv.url}"
