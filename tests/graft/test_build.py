"""build-graft over local rasters: samples, offsets on the pixels, failures as rows, resume, conflicts."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from affine import Affine
from PIL import Image
from pyproj import Transformer
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.graft.writer import done_shards, shard_urls
from tests.graft.synth import marked_raster, photo_points, photo_table

runner = CliRunner()


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("graft_scene")
    table = photo_table(root, n=60, seed=0)
    lons, lats = photo_points(60, 0)
    raster = marked_raster(root / "imagery", lons, lats)
    return {"root": root, "table": table, "imagery": raster.parent}


def _build(scene: dict[str, Path], out: Path, *extra: str) -> object:
    return runner.invoke(app, ["build-graft", "--photos", str(scene["table"]), "--imagery",
                               f"local:{scene['imagery']}", "--out", str(out), "--tile-px", "64", "--gsd", "1",
                               "--shard-size", "8", *extra])


def _samples(out: Path) -> list[dict]:
    ds = wds.WebDataset(shard_urls(out / "shards"), shardshuffle=False, empty_check=False)
    return list(ds)


def test_build_graft_samples_and_offsets(scene: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = _build(scene, out)
    assert res.exit_code == 0, res.output
    rows = pq.read_table(out / "tiles.parquet").to_pylist()
    shard_rows = [r for i in done_shards(out / "shards")
                  for r in pq.read_table(out / "shards" / f"{i:05d}.parquet").to_pylist()]
    assert len(shard_rows) == len(rows)  # one row per planned tile, failures included
    failed = {r["tile_id"]: r for r in shard_rows if r["status"] == "failed"}
    assert {r["error_code"] for r in failed.values()} == {"no_imagery", "no_photos"}
    assert all(r["error_message"] for r in failed.values())
    far = [r for r in shard_rows if r["lon"] > 15]
    assert far and all(r["error_code"] == "no_imagery" for r in far)
    samples = _samples(out)
    assert len(samples) == sum(r["status"] == "ok" for r in shard_rows) > 5
    n_checked = 0
    for s in samples:
        meta = json.loads(s["json"])
        sat = np.asarray(Image.open(io.BytesIO(s["sat.jpg"])))
        assert sat.shape == (128, 128, 3) and meta["width"] == 128 and meta["tile_width"] == 64
        assert meta["date_gap_days"] is not None and meta["acquired"] == "2021-06-15"
        tr = Transformer.from_crs("EPSG:4326", meta["crs"], always_xy=True)
        inv = ~Affine(*meta["transform"])
        for ph in meta["photos"]:
            col, row = inv * tr.transform(ph["lon"], ph["lat"])
            assert col == pytest.approx(ph["px_x"], abs=1e-6) and row == pytest.approx(ph["px_y"], abs=1e-6)
            assert ph["px_x"] - ph["tile_px_x"] == 32 and 32 <= ph["px_x"] < 96
            r, g, _b = (int(v) for v in sat[int(row), int(col)])
            assert r > 150 and r - g > 80, "the red mark under the photo is not at its pixel offset"
            n_checked += 1
            if ph["file"] is not None:
                photo = Image.open(io.BytesIO(s[ph["file"]]))
                assert min(photo.size) == 256
            else:
                assert ph["error_code"] == "missing_file"
    assert n_checked >= 50


def test_resume_and_conflicts(scene: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _build(scene, out).exit_code == 0
    shards = out / "shards"
    tars = sorted(shards.glob("*.tar"))
    before = {p.name: p.read_bytes() for p in tars}
    stamp = {p.name: p.stat().st_mtime_ns for p in shards.glob("*_stats.json")}
    (shards / "00001_stats.json").unlink()  # as if killed before the done marker of shard 1
    (shards / ".00002.tar.tmp-999").write_bytes(b"junk")  # a stale temporary
    res = _build(scene, out)
    assert res.exit_code == 0, res.output
    after = {p.name: p.stat().st_mtime_ns for p in shards.glob("*_stats.json")}
    assert after["00000_stats.json"] == stamp["00000_stats.json"]  # done shards are skipped
    assert after["00001_stats.json"] != stamp["00001_stats.json"]
    assert {p.name: p.read_bytes() for p in sorted(shards.glob("*.tar"))} == before  # identical samples
    assert not list(shards.glob("*.tmp-*"))
    res = _build(scene, out, "--seed", "5")
    assert res.exit_code == 2 and "different inputs or config" in res.output
    res = _build(scene, out, "--seed", "5", "--overwrite")
    assert res.exit_code == 0, res.output
    run = json.loads((out / "run.json").read_text())
    assert run["tiling"]["seed"] == 5 and run["summary"]["written"] > 0


def test_metadata_only_and_sentinel_pick(scene: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "meta"
    assert _build(scene, out, "--metadata-only").exit_code == 0
    samples = _samples(out)
    assert samples and all(set(s) - {"__key__", "__url__", "__local_path__"} == {"sat.jpg", "json"} for s in samples)
    meta = json.loads(samples[0]["json"])
    assert meta["metadata_only"] and meta["photos"][0]["file"] is None and "px_x" in meta["photos"][0]
    # Sentinel-2-style pick: the tile date goes into the request; an undated table fails as no_date.
    undated = tmp_path / "undated.csv"
    undated.write_text(scene["table"].read_text().replace("DateTaken", "Other"))
    out2 = tmp_path / "s2"
    res = runner.invoke(app, ["build-graft", "--photos", str(undated), "--imagery", f"local:{scene['imagery']}",
                              "--out", str(out2), "--collection", "COPERNICUS/S2_SR_HARMONIZED", "--tile-px", "16",
                              "--metadata-only"])
    assert res.exit_code == 0, res.output
    rows = [r for i in done_shards(out2 / "shards")
            for r in pq.read_table(out2 / "shards" / f"{i:05d}.parquet").to_pylist()]
    assert rows and {r["error_code"] for r in rows} == {"no_date"}
    run = json.loads((out2 / "run.json").read_text())
    assert run["build"]["pick_rule"] == "closest-to-date" and run["tiling"]["gsd"] == 10.0


def test_bad_inputs_are_one_line_errors(scene: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("ident,northing,easting\n1,2,3\n")
    res = runner.invoke(app, ["build-graft", "--photos", str(bad), "--imagery", f"local:{scene['imagery']}",
                              "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "found: ident, northing, easting" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["build-graft", "--photos", str(scene["table"]), "--imagery",
                              f"local:{tmp_path / 'nowhere'}", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "imagery folder not found" in res.output
    res = runner.invoke(app, ["graft", "plan", "--photos", str(scene["table"]), "--gsd", "-1", "--out",
                              str(tmp_path / "p")])
    assert res.exit_code == 2 and "--gsd must be a positive" in res.output


@pytest.mark.slow
def test_sigkill_mid_build_then_rerun_is_lossless(scene: dict[str, Path], tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "pipeline.cli", "build-graft", "--photos", str(scene["table"]), "--imagery",
                f"local:{scene['imagery']}", "--out", str(out), "--tile-px", "64", "--shard-size", "1"]

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    assert runner.invoke(app, cmd(clean)[3:]).exit_code == 0  # the reference, in-process
    total = len(done_shards(clean / "shards"))
    proc = subprocess.Popen(cmd(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(done_shards(killed / "shards")) < 2 and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    at_kill = len(done_shards(killed / "shards"))
    assert 0 < at_kill < total, "the build was not interrupted mid-way"
    subprocess.run(cmd(killed), check=True, env=env, capture_output=True)
    for p in sorted((clean / "shards").glob("*.tar")):
        assert p.read_bytes() == (killed / "shards" / p.name).read_bytes()
    keys = [r["key"] for i in done_shards(killed / "shards")
            for r in pq.read_table(killed / "shards" / f"{i:05d}.parquet").to_pylist()]
    assert len(keys) == len(set(keys)) == total
    assert not list((killed / "shards").glob("*.tmp-*"))
