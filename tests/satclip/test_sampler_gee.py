"""The sampler over gee:PROJECT against the loopback Earth Engine REST server (real rasters served)."""

from __future__ import annotations

import csv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
from pyproj import Transformer
from rasterio.windows import Window

from pipeline.errors import BadInputError
from pipeline.retry import RetryPolicy
from pipeline.satclip.gee import EE_BANDS, EE_COLLECTION, GeeScenes
from pipeline.satclip.sampler import SampleConfig, Sampler, run_shard_with, sample
from pipeline.satclip.scenes import S2_BANDS, SceneFilter
from tests.satclip.synth import CRS, X0, Y0, write_scene
from tests.servers.earth_engine import Asset, EarthEngineServer

TOKEN = "fixture-token"
FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)
ID = EE_COLLECTION + "/{}"
# (index, x offset, width, height, cloud %, date, MGRS tile, zero columns)
SCENES = [
    ("20220601T102559_20220601T102602_T32UMB", 0, 600, 500, 5.0, "2022-06-01T10:35:10", "32UMB", 0),
    ("20220606T102559_20220606T102602_T32UNB", 20_000, 256, 256, 1.5, "2022-06-06T10:35:11", "32UNB", 0),
    ("20220611T102559_20220611T102602_T32UPB", 40_000, 400, 300, 55.0, "2022-06-11T10:35:09", "32UPB", 0),
    ("20200514T102559_20200514T102602_T32UQB", 60_000, 300, 300, 0.5, "2020-05-14T10:35:09", "32UQB", 0),
]
USED = {ID.format(s[0]) for s in SCENES[:2]}  # the 55 %-cloudy and the 2020 scenes are filtered out


def _index(out: Path) -> list[dict[str, str]]:
    with open(out / "index.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        ID.format(idx): write_scene(tmp_path / "rasters" / f"{idx}.tif", w, h, seed=k, x0=X0 + dx, zero_cols=zc)
        for k, (idx, dx, w, h, _c, _d, _t, zc) in enumerate(SCENES)
    }


def _assets(files: dict[str, Path]) -> list[Asset]:
    out = []
    for idx, _dx, _w, _h, cloud, when, tile, _zc in SCENES:
        props = {"CLOUDY_PIXEL_PERCENTAGE": cloud, "MGRS_TILE": tile, "SPACECRAFT_NAME": "Sentinel-2A"}
        out.append(Asset(ID.format(idx), files[ID.format(idx)], list(EE_BANDS), when + "Z", props))
    return out


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYSCRIPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SKYSCRIPT_EE_TOKEN", TOKEN)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)


@pytest.fixture()
def server(files: dict[str, Path], env: None, monkeypatch: pytest.MonkeyPatch):
    with EarthEngineServer(_assets(files), token=TOKEN) as srv:
        monkeypatch.setenv("SKYSCRIPT_EE_URL", srv.url)  # the endpoint, as a user would point at it
        yield srv


def _source(**kw) -> GeeScenes:
    return GeeScenes("my-project", policy=FAST, **kw)


def _direct(path: Path, col: int, row: int, size: int = 256) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(window=Window(col, row, size, size))


def test_gee_patches_equal_direct_reads_with_provenance(server, files, tmp_path) -> None:
    src = _source()
    server.hits.clear()
    server.bodies.clear()
    out = tmp_path / "out"
    result = sample(SampleConfig(n=6, seed=2, by="scene", shard_size=4), src, out, workers=3)
    assert result["written"]["ok"] == 6 and result["index_rows"] == 6
    # one metadata listing for --by scene, then exactly ONE computePixels per patch
    assert server.hits["compute"] == 1 and server.hits["pixels"] == 6
    rows = _index(out)
    assert {r["scene_id"] for r in rows} <= USED and len({r["scene_id"] for r in rows}) == 2
    to_utm = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
    meta = {ID.format(s[0]): s for s in SCENES}
    for r in rows:
        _idx, _dx, _w, _h, cloud, when, tile, _zc = meta[r["scene_id"]]
        assert r["datetime"] == when + "Z" and float(r["cloud_cover"]) == cloud and r["mgrs_tile"] == tile
        assert r["platform"] == "Sentinel-2A" and r["crs"] == CRS
        col, row = int(r["col_off"]), int(r["row_off"])
        with rasterio.open(out / "images" / r["fn"]) as ds:
            patch, bounds, tags = ds.read(), ds.bounds, ds.tags()
            assert patch.shape == (12, 256, 256) and patch.dtype == np.uint16
            assert list(ds.descriptions) == list(S2_BANDS) and ds.crs.to_string() == CRS
        assert tags["scene_id"] == r["scene_id"] and tags["mgrs_tile"] == tile and tags["source"] == "gee:my-project"
        assert tags["cloud_cover"] == str(cloud) and tags["datetime"] == when + "Z"
        np.testing.assert_array_equal(patch, _direct(files[r["scene_id"]], col, row))
        x, y = to_utm.transform(float(r["lon"]), float(r["lat"]))
        assert abs(x - (bounds.left + bounds.right) / 2) < 1e-3 and abs(y - (bounds.top + bounds.bottom) / 2) < 1e-3
    # the pixel requests: the 12 bands as uint16 on the scene's own grid, shifted to the window
    pix = [b for b in server.bodies if "grid" in b]
    assert len(pix) == 6
    x0 = {ID.format(s[0]): X0 + s[1] for s in SCENES}
    want = sorted((x0[r["scene_id"]] + 10 * int(r["col_off"]), Y0 - 10 * int(r["row_off"])) for r in rows)
    assert (
        sorted((b["grid"]["affineTransform"]["translateX"], b["grid"]["affineTransform"]["translateY"]) for b in pix)
        == want
    )
    for body in pix:
        grid = body["grid"]
        assert grid["crsCode"] == CRS and grid["dimensions"] == {"width": 256, "height": 256}
        t = grid["affineTransform"]
        assert (t["scaleX"], t["scaleY"], t.get("shearX", 0), t.get("shearY", 0)) == (10.0, -10.0, 0, 0)
        assert body["fileFormat"] == "NPY"
    funcs = str(pix[0]["expression"])
    assert "Image.toUint16" in funcs and "Image.unmask" in funcs and str(list(EE_BANDS)) in funcs.replace('"', "'")


def test_land_mode_one_metadata_request_per_draw(server, files, tmp_path) -> None:
    src = _source()
    first = src.all_scenes(SceneFilter(), None)[0]
    w, s, e, n = first.footprint
    server.hits.clear()
    out = tmp_path / "out"
    cfg = SampleConfig(n=4, seed=1, by="land", region=(w, s, e, n), land_only=False)
    result = sample(cfg, src, out, workers=2)
    assert result["written"]["ok"] == 4
    tries = sum(r["tries"] for r in pq.read_table(out / "shards" / "00000.parquet").to_pylist())
    assert server.hits["compute"] == tries and server.hits["pixels"] == tries
    for r in _index(out):
        assert w <= float(r["lon"]) <= e and s <= float(r["lat"]) <= n
        path = files[r["scene_id"]]
        with rasterio.open(out / "images" / r["fn"]) as ds:
            np.testing.assert_array_equal(ds.read(), _direct(path, int(r["col_off"]), int(r["row_off"])))
    # the metadata request filtered by the point, the dates and the cloud cover, server side
    compute = str([b for b in server.bodies if "grid" not in b][-1])
    for name in ("GeometryConstructors.Point", "Filter.dateRangeContains", "CLOUDY_PIXEL_PERCENTAGE"):
        assert name in compute


def test_429_and_503_are_retried(server, tmp_path) -> None:
    src = _source()
    clean = tmp_path / "clean"
    sample(SampleConfig(n=2, seed=7, by="scene"), src, clean)
    server.hits.clear()
    server.inject("pixels", ["429", "503"])
    server.inject("compute", ["503"])
    out = tmp_path / "out"
    result = sample(SampleConfig(n=2, seed=7, by="scene"), src, out)
    assert result["written"]["ok"] == 2
    assert server.hits["pixels"] == 4 and server.hits["compute"] == 2  # each fault answered once more
    assert (clean / "index.csv").read_bytes() == (out / "index.csv").read_bytes()
    assert (clean / "shards" / "00000.tar").read_bytes() == (out / "shards" / "00000.tar").read_bytes()


def test_memory_limit_is_a_failed_row(server, tmp_path) -> None:
    src = _source()
    server.hits.clear()
    server.inject("pixels", ["memory"])
    out = tmp_path / "out"
    result = sample(SampleConfig(n=2, seed=3, by="scene", max_tries=1), src, out, workers=1)
    assert server.hits["pixels"] == 2  # no retry of an answer that cannot succeed
    assert result["written"] == {"ok": 1, "failed": 1, "skipped_shards": 0}
    rows = pq.read_table(out / "shards" / "00000.parquet").to_pylist()
    failed = [r for r in rows if r["status"] != "ok"]
    assert len(failed) == 1 and failed[0]["error_code"] == "read_error"
    assert "User memory limit exceeded" in failed[0]["error_message"]
    assert len(_index(out)) == 1


def test_deterministic_per_seed(server, tmp_path) -> None:
    src = _source()
    runs = {}
    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        sample(SampleConfig(n=5, seed=seed, by="scene", shard_size=3), src, tmp_path / name, workers=3)
        runs[name] = [(tmp_path / name / "shards" / f"{s:05d}.tar").read_bytes() for s in range(2)]
    assert runs["a"] == runs["b"]
    assert (tmp_path / "a" / "index.csv").read_bytes() == (tmp_path / "b" / "index.csv").read_bytes()
    assert runs["a"] != runs["c"]


def test_scene_vanishing_after_the_search(server, files, tmp_path) -> None:
    src = _source()
    pool = src.all_scenes(SceneFilter(), None)
    gone = pool[0].scene_id
    for col in server.collections.values():  # deleted between the search and the read
        col[:] = [a for a in col if a.id != gone]
    server.interpreter.images.pop(gone)
    cfg = SampleConfig(n=8, seed=0, by="scene", max_tries=1)
    sampler = Sampler(cfg, src, pool=pool)
    with ThreadPoolExecutor(1) as threads:
        stats = run_shard_with(sampler, tmp_path / "out", 0, threads)
    rows = pq.read_table(tmp_path / "out" / "shards" / "00000.parquet").to_pylist()
    assert stats["errors"].get("scene_gone", 0) == sum(r["error_code"] == "scene_gone" for r in rows) > 0
    assert all(gone in r["error_message"] for r in rows if r["error_code"] == "scene_gone")
    assert all(r["scene_id"] != gone for r in rows if r["status"] == "ok")


def test_partly_nodata_scene_is_rejected(files, env, tmp_path, monkeypatch) -> None:
    # a one-window scene whose left 40 % is S2 nodata (0, masked on Earth Engine): never a patch
    bad = write_scene(tmp_path / "rasters" / "bad.tif", 256, 256, seed=9, x0=X0 + 80_000, zero_cols=102)
    extra = Asset(
        ID.format("20220620T102559_20220620T102602_T32UQC"),
        bad,
        list(EE_BANDS),
        "2022-06-20T10:35:00Z",
        {"CLOUDY_PIXEL_PERCENTAGE": 2.0},
    )
    assets = [*_assets(files), extra]
    with EarthEngineServer(assets, token=TOKEN) as srv:
        monkeypatch.setenv("SKYSCRIPT_EE_URL", srv.url)
        out = tmp_path / "out"
        result = sample(SampleConfig(n=6, seed=4, by="scene", max_tries=30), _source(), out)
    assert result["written"]["ok"] == 6
    assert {r["scene_id"] for r in _index(out)} <= USED
    assert '"nodata"' in (out / "shards" / "00000_stats.json").read_text()


def test_bad_inputs(server, tmp_path, monkeypatch) -> None:
    from pipeline.satclip.sources import open_source

    with pytest.raises(BadInputError, match="collection"):
        _source(collection="COPERNICUS/NOPE")
    with pytest.raises(BadInputError, match="gee:"):
        open_source("gee:users/me")
    # too cloudy everywhere: --by scene has nothing to draw from
    with pytest.raises(BadInputError, match="filters"):
        sample(SampleConfig(n=1, by="scene", scenes=SceneFilter(max_cloud=1.0)), _source(), tmp_path / "o")
    # last: a failed start leaves ee initialised with the rejected token in this process
    monkeypatch.setenv("SKYSCRIPT_EE_TOKEN", "expired-token")
    with pytest.raises(BadInputError, match="cannot start Earth Engine") as info:
        open_source("gee:another-project")
    assert "expired-token" not in str(info.value) and "\n" not in str(info.value)


def test_cli_sample_gee(server, tmp_path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    out = tmp_path / "cli"
    args = ["satclip", "sample", "--n", "3", "--imagery", "gee:my-project", "--out", str(out), "--by", "scene"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    rows = _index(out)
    assert len(rows) == 3 and {r["scene_id"] for r in rows} <= USED
    run = (out / "run.json").read_text()
    assert '"kind": "gee"' in run and EE_COLLECTION in run and TOKEN not in run


@pytest.mark.shared_data
def test_real_sentinel2_patches_over_gee(env, tmp_path, shared_data, monkeypatch) -> None:
    """Real S2 L2A patches as Earth Engine images: one-window scenes, read back exactly."""
    sources = sorted((shared_data / "imagery" / "sentinel2").glob("example_s2_patch_*.tif"))[:3]
    assert sources
    assets = [
        Asset(
            ID.format(f"20210701T000000_20210701T000000_T{k:05d}"),
            p,
            list(EE_BANDS),
            "2021-07-01T10:00:00Z",
            {"CLOUDY_PIXEL_PERCENTAGE": 3.0, "MGRS_TILE": f"T{k}"},
        )
        for k, p in enumerate(sources)
    ]
    originals = {a.id: a.path for a in assets}
    with EarthEngineServer(assets, token=TOKEN) as srv:
        monkeypatch.setenv("SKYSCRIPT_EE_URL", srv.url)
        out = tmp_path / "out"
        result = sample(SampleConfig(n=6, seed=0, by="scene"), _source(), out)
    assert result["written"]["ok"] == 6
    for r in _index(out):
        assert (r["col_off"], r["row_off"]) == ("0", "0")
        with rasterio.open(out / "images" / r["fn"]) as ds, rasterio.open(originals[r["scene_id"]]) as src:
            np.testing.assert_array_equal(ds.read(), src.read())
            assert ds.crs == src.crs and ds.transform == src.transform


@pytest.mark.slow
def test_dask_local_executor_reopens_gee_in_workers(server, tmp_path) -> None:
    from pipeline.satclip.distribute import sample_on

    cfg = SampleConfig(n=4, seed=6, by="scene", shard_size=2)
    sample(cfg, _source(), tmp_path / "a")
    # workers reopen gee:my-project themselves (endpoint and token from the environment they inherit)
    result = sample_on("dask-local:2", cfg, "gee:my-project", tmp_path / "b", workers=2)
    assert result["written"]["ok"] == 4
    assert (tmp_path / "a" / "index.csv").read_bytes() == (tmp_path / "b" / "index.csv").read_bytes()
    for s in range(2):
        name = f"{s:05d}.tar"
        assert (tmp_path / "a" / "shards" / name).read_bytes() == (tmp_path / "b" / "shards" / name).read_bytes()
