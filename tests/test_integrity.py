"""Build integrity: no blank chips, resume follows the persisted plan, an honest fingerprint,
unreadable run.json, config checked up front, true locations, absences, error codes."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
from shapely.geometry import Point, box

from pipeline import planning
from pipeline.build import BuildInputs, build, prepare_run, run_shard
from pipeline.config import load_config
from pipeline.errors import OutputConflictError
from storage import shards as sh
from tests.fakes import FakeArea, make_fake_area

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def area(tmp_path_factory: pytest.TempPathFactory) -> FakeArea:
    return make_fake_area(tmp_path_factory.mktemp("area"), seed=5, n_buildings=16)


def _quiet(_msg: str) -> None:
    pass


def _inputs(area: FakeArea, out: Path, imagery: Path | None = None, osm: str | None = None) -> BuildInputs:
    return BuildInputs(osm=osm or str(area.osm), imagery=f"local:{imagery or area.imagery_dir}", out=str(out))


def _tiny(**shards: int):
    cfg = load_config(preset="tiny")
    return cfg.replace(shards=dataclasses.replace(cfg.shards, **shards)) if shards else cfg


def _samples(out: Path) -> dict[str, dict]:
    return {s["key"]: s for s in sh.iter_samples(out / "shards")}


def _half_nodata(area: FakeArea, dest: Path, declared: bool) -> Path:
    """A copy of the area's raster whose west half is empty (nodata=0 declared, or bare black)."""
    dest.mkdir(parents=True, exist_ok=True)
    with rasterio.open(area.raster) as src:
        data, profile = src.read(), src.profile
    data[:, :, : data.shape[2] // 2] = 0
    if declared:
        profile.update(nodata=0)
    with rasterio.open(dest / "half.tif", "w", **profile) as dst:
        dst.write(data)
    return dest


@pytest.mark.parametrize("declared", [True, False])
def test_half_nodata_raster_gives_no_blank_chip(area: FakeArea, tmp_path: Path, declared: bool) -> None:
    imagery = _half_nodata(area, tmp_path / "img", declared)
    out = tmp_path / "out"
    cfg = _tiny()
    summary = build(_inputs(area, out, imagery), cfg, log=_quiet)
    rows = sh.read_rows(out / "shards").to_pylist()
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] == "failed"]
    assert ok, "objects over valid pixels must still be built"
    assert all(r["empty_fraction"] <= cfg.imagery.max_nodata_frac for r in ok)
    assert any(r["error_code"] == "nodata" for r in failed), {r["error_code"] for r in failed}
    assert all(r["error_code"] and r["error_message"] for r in failed)
    assert summary["errors"].get("nodata", 0) >= 1  # tallied by code
    west = area.bbox[0] + (area.bbox[2] - area.bbox[0]) / 2
    for s in _samples(out).values():
        meta = s["json"]
        assert meta["bbox"][0] >= west - 1e-6 or meta["empty_fraction"] <= cfg.imagery.max_nodata_frac
        assert meta["provenance"]["resampling"] == "bilinear" and len(meta["provenance"]["src_window"]) == 4
        assert len(meta["transform"]) == 6 and meta["resampling"] == "bilinear"
    nd = [r for r in failed if r["error_code"] == "nodata"]
    assert all("nodata" in r["error_message"] or "no data" in r["error_message"] for r in nd)


def test_locations_are_chip_centre_and_a_point_on_the_object(area: FakeArea, tmp_path: Path) -> None:
    out = tmp_path / "o"
    build(_inputs(area, out), _tiny(), log=_quiet)
    objects = {r["key"]: shapely.from_wkb(r["geometry"]) for r in pq.read_table(out / "objects.parquet").to_pylist()}
    samples = _samples(out)
    assert "w2000" in samples  # the footway: its tile is centred on one vertex
    for key, s in samples.items():
        m = s["json"]
        tile = box(*m["bbox"])
        assert tile.contains(Point(m["lon"], m["lat"])), key
        geom = objects[key]
        assert geom.distance(Point(m["object_lon"], m["object_lat"])) < 1e-9, key
        assert tile.buffer(1e-9).contains(Point(m["object_lon"], m["object_lat"])), key
        x0, _y0, _x1, y1 = m["bounds"]
        assert m["transform"] == [m["gsd"], 0.0, x0, 0.0, -m["gsd"], y1]


def test_resume_follows_the_persisted_plan(area: FakeArea, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _tiny(shard_size=4)
    clean, broken = tmp_path / "clean", tmp_path / "broken"
    build(_inputs(area, clean), cfg, log=_quiet)
    plan = prepare_run(_inputs(area, broken), cfg, log=_quiet)
    run_shard(plan.tasks[0], plan.context)
    # Whatever would be selected now (a changed selection rule), the resume follows the plan made.
    monkeypatch.setattr(planning, "select", lambda scan, cfg: np.flatnonzero(scan.candidate)[::-1][:3])
    build(_inputs(area, broken), cfg, log=_quiet)
    a, b = _samples(clean), _samples(broken)
    assert a.keys() == b.keys() and len(a) > 3
    for k in a:
        assert a[k]["jpg"] == b[k]["jpg"] and a[k]["json"] == b[k]["json"]


def test_a_worker_reads_only_its_shard_plan(area: FakeArea, tmp_path: Path) -> None:
    out = tmp_path / "o"
    plan = prepare_run(_inputs(area, out), _tiny(shard_size=4), log=_quiet)
    (out / "objects.parquet").unlink()  # workers never touch the whole objects table
    stats = run_shard(plan.tasks[0], plan.context)
    assert stats["count"] == len(plan.tasks[0].keys)
    inputs = pq.read_table(out / "plan" / "00000.parquet")
    assert sum(inputs.column("planned").to_pylist()) == len(plan.tasks[0].keys)


def test_changed_tag_model_format_or_labels_is_refused_naming_it(
    area: FakeArea, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "o"
    cfg = _tiny(shard_size=4)
    plan = prepare_run(_inputs(area, out), cfg, log=_quiet)
    run_shard(plan.tasks[0], plan.context)
    import tag_classifier.persistence as model_mod

    monkeypatch.setattr(model_mod, "FORMAT_VERSION", model_mod.FORMAT_VERSION + 1)
    with pytest.raises(OutputConflictError, match=r"visibility\.model\.format"):
        build(_inputs(area, out), cfg, log=_quiet)
    monkeypatch.undo()

    import tag_classifier.visibility as vis_mod
    from tag_classifier.labels import LABELS_PATH, load_labels

    edited_csv = tmp_path / "labels.csv"  # the shipped labels with one row's decision changed
    lines = LABELS_PATH.read_text(encoding="utf-8").splitlines(keepends=True)
    edited_csv.write_text(lines[0] + "".join(lines[1:]).replace("tree_row", "tree_row", 1) + "\n", encoding="utf-8")
    edited = load_labels(edited_csv)
    assert edited.sha256 != load_labels().sha256
    monkeypatch.setattr(vis_mod, "load_labels", lambda *a, **k: edited)
    with pytest.raises(OutputConflictError, match=r"labels_sha256"):
        build(_inputs(area, out), cfg, log=_quiet)
    assert sh.done_shards(out / "shards") == [0]  # nothing already written was lost


def test_changed_uninteresting_keys_is_refused(area: FakeArea, tmp_path: Path) -> None:
    out = tmp_path / "o"
    cfg = _tiny()
    build(_inputs(area, out), cfg, log=_quiet)
    other = cfg.replace(osm=dataclasses.replace(cfg.osm, uninteresting_keys=("created_by",)))
    with pytest.raises(OutputConflictError, match=r"osm\.uninteresting_keys"):
        build(_inputs(area, out), other, log=_quiet)
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["osm"]["uninteresting_keys"] != "***"  # not mistaken for a secret


def test_other_home_absolute_path_and_operational_settings_resume(
    area: FakeArea, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "o"
    cfg = _tiny()
    first = build(_inputs(area, out), cfg, log=_quiet)
    monkeypatch.setenv("HOME", str(tmp_path / "another-home"))
    monkeypatch.chdir(area.osm.parent)
    again = load_config(preset="tiny")  # the Overpass cache default moves with HOME
    again = again.replace(osm=dataclasses.replace(again.osm, overpass=again.osm.overpass.replace(slots_per_endpoint=1)))
    second = build(_inputs(area, out, osm=area.osm.name), again, log=_quiet)  # relative path this time
    assert second["written"] == first["written"] and second["shards_done"] == first["shards_done"]


def test_corrupt_run_json_and_orphan_shards_are_conflicts(area: FakeArea, tmp_path: Path) -> None:
    out = tmp_path / "o"
    cfg = _tiny(shard_size=4)
    build(_inputs(area, out), cfg, log=_quiet)
    before = sorted(p.name for p in (out / "shards").iterdir())
    (out / "run.json").write_text('{"fingerprint": "abc", ')  # truncated
    with pytest.raises(OutputConflictError, match=r"unreadable"):
        build(_inputs(area, out), cfg.replace(seed=7), log=_quiet)
    (out / "run.json").unlink()
    with pytest.raises(OutputConflictError, match=r"no run\.json"):
        build(_inputs(area, out), cfg.replace(seed=7), log=_quiet)
    assert sorted(p.name for p in (out / "shards").iterdir()) == before  # nothing lost
    summary = build(_inputs(area, out), cfg.replace(seed=7), overwrite=True, log=_quiet)
    assert summary["shards_done"] == summary["shards_total"]


def test_absences_never_become_samples(tmp_path: Path) -> None:
    from tests.fakes import make_fake_area as mk

    a = mk(tmp_path / "a", seed=2, n_buildings=4)
    text = a.osm.read_text().replace('k="building" v="house"', 'k="building" v="no"')
    a.osm.write_text(text)
    out = tmp_path / "o"
    build(_inputs(a, out), _tiny(), log=_quiet)
    rows = sh.read_rows(out / "shards").to_pylist()
    assert rows
    for s in _samples(out).values():
        assert "no building" not in s["json"]["caption_single"] and "no building" not in s["json"]["caption_multi"]
    objs = {r["key"]: json.loads(r["tags"]) for r in pq.read_table(out / "objects.parquet").to_pylist()}
    assert not [r for r in rows if objs[r["key"]].get("building") == "no"]


def _cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SKYSCRIPT_CACHE": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120, cwd=ROOT)


def test_out_of_range_config_fails_at_start_naming_the_key(area: FakeArea, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("planner:\n  margin_frac: 1.5\n")
    out = tmp_path / "never"
    t0 = time.perf_counter()
    res = _cli(["build", "--osm", str(area.osm), "--imagery", f"local:{area.imagery_dir}", "--out", str(out),
                "--config", str(bad)], tmp_path)
    elapsed = time.perf_counter() - t0
    assert res.returncode == 2, res.stderr
    assert "planner.margin_frac" in res.stderr and "1.5" in res.stderr and "Traceback" not in res.stderr
    assert not out.exists()  # nothing written
    print(f"start-up refusal took {elapsed:.2f} s (process start included)")


def test_unwritable_out_is_a_one_line_error(area: FakeArea, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = _cli(["build", "--osm", str(area.osm), "--imagery", f"local:{area.imagery_dir}", "--out",
                str(blocker / "sub"), "--preset", "tiny"], tmp_path)
    assert res.returncode == 2 and "--out" in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_shard_neighbour_sets_lose_no_neighbour(
    area: FakeArea, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The planner's reach bound is exact enough: with every object as a candidate, captions are the same."""
    cfg = _tiny(shard_size=3)
    build(_inputs(area, tmp_path / "bounded"), cfg, log=_quiet)
    inputs = [pq.read_table(p).num_rows for p in sorted((tmp_path / "bounded" / "plan").glob("0*.parquet"))]
    everything = np.array([-180.0, -90.0, 180.0, 90.0])
    monkeypatch.setattr(planning, "reach_boxes", lambda b, *a, **k: np.tile(everything, (len(b), 1)))
    build(_inputs(area, tmp_path / "all"), cfg, log=_quiet)
    a, b = _samples(tmp_path / "bounded"), _samples(tmp_path / "all")
    assert a.keys() == b.keys()
    multi = {k: s["json"]["caption_multi"] for k, s in a.items()}
    assert multi == {k: s["json"]["caption_multi"] for k, s in b.items()}
    n_all = pq.read_table(tmp_path / "all" / "objects.parquet").num_rows
    assert min(inputs) < n_all  # the bound does prune (the fake area is 160 m wide)


def test_images_per_object_gives_one_sample_per_collection(area: FakeArea, tmp_path: Path) -> None:
    """imagery.images_per_object: 2 over two raster folders: each object once per folder, keys suffixed."""
    import shutil

    from rasterio.enums import Resampling

    fine = tmp_path / "fine"
    shutil.copytree(area.imagery_dir, fine)
    coarse = tmp_path / "coarse"
    coarse.mkdir()
    with rasterio.open(area.raster) as src:  # the same ground at twice the GSD: another collection
        data = src.read(out_shape=(3, src.height // 2, src.width // 2), resampling=Resampling.average)
        profile = src.profile
        profile.update(width=data.shape[2], height=data.shape[1], transform=src.transform * src.transform.scale(2, 2))
    with rasterio.open(coarse / "ortho_0p6.tif", "w", **profile) as dst:
        dst.write(data)
    cfg = _tiny()
    cfg = cfg.replace(imagery=dataclasses.replace(cfg.imagery, images_per_object=2))
    out = tmp_path / "o"
    inputs = BuildInputs(osm=str(area.osm), imagery=(f"local:{fine}", f"local:{coarse}"), out=str(out))  # type: ignore[arg-type]
    summary = build(inputs, cfg, log=_quiet)
    samples = _samples(out)
    assert summary["written"] == len(samples) > 0
    doubled = [k for k in samples if k.endswith("_1")]
    assert doubled, sorted(samples)
    for k in doubled:
        base = samples[k.removesuffix("_1")]["json"]
        other = samples[k]["json"]
        assert base["osm_id"] == other["osm_id"] and base["collection"] != other["collection"]
        assert "." not in k
    rows = sh.read_rows(out / "shards").to_pylist()
    assert len({r["key"] for r in rows}) == len(rows)  # unique keys, failures included


def test_auto_tag_embedder_is_decided_once_on_need_and_recorded(
    area: FakeArea, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tag_classifier.embedders as emb
    from tag_classifier.auto_model import AutoModel

    calls: list[int] = []

    def fake_resolve(*_a: object, **_k: object) -> emb.AutoDecision:
        calls.append(1)
        return emb.AutoDecision("minilm", "minilm: CLIP ViT-L-14 openai weights are not cached (test)")

    monkeypatch.setattr(emb, "resolve_auto", fake_resolve)
    out = tmp_path / "o"
    build(_inputs(area, out), _tiny(), log=_quiet)  # every tag of the fake area is labelled
    run = json.loads((out / "run.json").read_text())
    assert calls == [] and run["tag_classifier"]["embedder"] is None  # never needed, never looked for
    model = AutoModel(__import__("tag_classifier.labels", fromlist=["x"]).load_labels(), embedder="auto")
    assert model.resolve() == "minilm" and model.resolve() == "minilm" and calls == [1]  # decided once
    assert "not cached" in model.reason
