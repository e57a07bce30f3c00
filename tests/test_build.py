"""End-to-end builds on seeded fake data: contract, resume, conflicts, bad input."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image
from shapely.geometry import box

from pipeline.build import BuildInputs, build, prepare_run, run_shard
from pipeline.config import load_config
from pipeline.errors import BadInputError, InputFileError, OutputConflictError
from pipeline.geo import BBox
from storage import shards as sh
from tests.fakes import FakeArea, make_fake_area

REQUIRED_JSON = {
    "key", "osm_type", "osm_id", "tags", "visible_tags", "caption_single", "caption_multi", "surrounding",
    "lon", "lat", "bbox", "gsd", "source", "collection", "image_id", "acquired", "crs", "width", "height",
}


@pytest.fixture(scope="module")
def area(tmp_path_factory: pytest.TempPathFactory) -> FakeArea:
    return make_fake_area(tmp_path_factory.mktemp("area"), seed=3)


def _inputs(area: FakeArea, out: Path, **kw: object) -> BuildInputs:
    return BuildInputs(osm=str(area.osm), imagery=f"local:{area.imagery_dir}", out=str(out), **kw)


def _quiet(_msg: str) -> None:
    pass


def _samples(out: Path) -> dict[str, dict]:
    return {s["key"]: s for s in sh.iter_samples(out / "shards")}


def test_build_writes_the_output_contract(area: FakeArea, tmp_path: Path) -> None:
    cfg = load_config(preset="tiny").replace(seed=1)
    out = tmp_path / "out"
    summary = build(_inputs(area, out), cfg, log=_quiet)
    assert summary["shards_done"] == summary["shards_total"] >= 1
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["seed"] == 1 and run["fingerprint"] and run["versions"]["python"]
    objects = pq.read_table(out / "objects.parquet").to_pylist()
    assert {"key", "osm_type", "osm_id", "status", "error_message", "geometry"} <= set(objects[0])
    rows = sh.read_rows(out / "shards").to_pylist()
    assert len(rows) == summary["planned"] == run["n_planned"]
    assert len({r["key"] for r in rows}) == len(rows)
    # Every building is planned; the name-only node never is.
    planned = {(r["osm_type"], r["osm_id"]) for r in rows}
    assert {("way", i) for i in area.building_ids} <= planned
    samples = _samples(out)
    assert samples, "no sample written"
    ok_rows = [r for r in rows if r["status"] == "ok"]
    assert set(samples) == {r["key"] for r in ok_rows}
    objs_by_key = {o["key"]: o for o in objects}
    import shapely

    for key, s in samples.items():
        meta = s["json"]
        assert set(meta) >= REQUIRED_JSON, REQUIRED_JSON - set(meta)
        assert "." not in key and meta["key"] == key
        img = Image.open(io.BytesIO(s["jpg"]))
        img.load()
        assert img.size == (meta["width"], meta["height"])
        geom = shapely.from_wkb(objs_by_key[key]["geometry"])
        tile = box(*meta["bbox"]).buffer(1e-9)
        # Points and polygons lie wholly inside; a line's tile is centred on one of its vertices.
        assert tile.contains(geom) if geom.geom_type != "LineString" else tile.intersects(geom), key
        assert s["txt"] == meta["caption_single"] and s["txt"]
        if meta["osm_type"] == "way" and meta["osm_id"] in area.building_ids:
            assert "building" in meta["caption_single"]
            assert "House" not in meta["caption_multi"]  # names are not visual
        assert meta["source"] == "local" and meta["image_id"].endswith("ortho.tif")


def test_resume_after_interruption_gives_identical_samples(area: FakeArea, tmp_path: Path) -> None:
    tiny = load_config(preset="tiny")
    cfg = tiny.replace(shards=dataclasses.replace(tiny.shards, shard_size=4))
    clean, broken = tmp_path / "clean", tmp_path / "broken"
    build(_inputs(area, clean), cfg, log=_quiet)

    plan = prepare_run(_inputs(area, broken), cfg, log=_quiet)
    assert len(plan.tasks) >= 3
    run_shard(plan.tasks[0], plan.context)

    class Boom(Exception):
        pass

    calls = {"n": 0}

    def explode() -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise Boom  # dies half-way through shard 1

    with pytest.raises(Boom):
        run_shard(plan.tasks[1], plan.context, on_object=explode)
    assert sh.done_shards(broken / "shards") == [0]
    build(_inputs(area, broken), cfg, log=_quiet)  # the same command again
    a, b = _samples(clean), _samples(broken)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k]["jpg"] == b[k]["jpg"] and a[k]["json"] == b[k]["json"]
    for i in sh.done_shards(clean / "shards"):
        name = f"{i:05d}.tar"
        assert (clean / "shards" / name).read_bytes() == (broken / "shards" / name).read_bytes()


def test_changed_config_needs_overwrite(area: FakeArea, tmp_path: Path) -> None:
    out = tmp_path / "o"
    cfg = load_config(preset="tiny")
    build(_inputs(area, out), cfg, log=_quiet)
    with pytest.raises(OutputConflictError, match="--overwrite"):
        build(_inputs(area, out), cfg.replace(seed=99), log=_quiet)
    before = sorted(p.name for p in (out / "shards").iterdir())
    assert before  # nothing was deleted by the refused run
    summary = build(_inputs(area, out), cfg.replace(seed=99), overwrite=True, log=_quiet)
    assert summary["shards_done"] == summary["shards_total"]
    assert json.loads((out / "run.json").read_text())["seed"] == 99


def test_max_objects_subsample_is_seeded(area: FakeArea, tmp_path: Path) -> None:
    cfg = load_config(preset="tiny", max_objects=5)
    r1 = build(_inputs(area, tmp_path / "a"), cfg, log=_quiet)
    build(_inputs(area, tmp_path / "b"), cfg, log=_quiet)
    assert r1["planned"] == 5
    assert _samples(tmp_path / "a").keys() == _samples(tmp_path / "b").keys()


def test_bad_inputs_are_explained(area: FakeArea, tmp_path: Path) -> None:
    cfg = load_config(preset="tiny")
    with pytest.raises(InputFileError, match=r"missing\.osm"):
        build(BuildInputs(str(tmp_path / "missing.osm"), f"local:{area.imagery_dir}", str(tmp_path / "x")),
              cfg, log=_quiet)
    with pytest.raises((InputFileError, BadInputError)):
        build(BuildInputs(str(area.osm), f"local:{tmp_path / 'no-such-dir'}", str(tmp_path / "y")), cfg,
              log=_quiet)
    far = BBox(10.0, 10.0, 10.01, 10.01)
    with pytest.raises(BadInputError, match="no tagged OSM objects"):
        build(_inputs(area, tmp_path / "z", bbox=far), cfg, log=_quiet)


def test_objects_outside_imagery_become_failed_rows(area: FakeArea, tmp_path: Path) -> None:
    # Imagery folder with a raster far away: every planned object fails with a reason, none is lost.
    import shutil

    from tests.fakes import make_fake_area as mk

    other = mk(tmp_path / "elsewhere", seed=9)
    moved = tmp_path / "far_imagery"
    shutil.copytree(other.imagery_dir, moved)
    import rasterio

    with rasterio.open(moved / "ortho.tif", "r+") as ds:
        t = ds.transform
        ds.transform = t.__class__(t.a, t.b, t.c + 50_000, t.d, t.e, t.f)
    out = tmp_path / "o"
    summary = build(BuildInputs(str(area.osm), f"local:{moved}", str(out)), load_config(preset="tiny"),
                    log=_quiet)
    rows = sh.read_rows(out / "shards").to_pylist()
    assert summary["written"] == 0 and len(rows) == summary["planned"] > 0
    assert all(r["status"] == "failed" and r["error_message"] for r in rows)
