"""The sampler over local:DIR scenes: layout, pixels, centres, rejection rules, determinism, resume."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
from pyproj import Transformer
from rasterio.windows import Window

from pipeline.errors import BadInputError, OutputConflictError
from pipeline.satclip.local import LocalScenes
from pipeline.satclip.sampler import SampleConfig, sample
from pipeline.satclip.scenes import SceneFilter
from tests.satclip.synth import CRS, X0, write_scene


def _index(out: Path) -> list[dict[str, str]]:
    with open(out / "index.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def scenes(tmp_path: Path) -> Path:
    folder = tmp_path / "scenes"
    tags = {"datetime": "2022-07-01T10:00:00Z", "cloud_cover": "3.5", "mgrs_tile": "32UNA", "platform": "sentinel-2b"}
    write_scene(folder / "a.tif", 600, 500, seed=1, tags=tags)
    write_scene(folder / "b.tif", 256, 256, seed=2, x0=X0 + 20_000, tags={**tags, "cloud_cover": "1.0"})
    return folder


def test_layout_pixels_and_centres(scenes: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = SampleConfig(n=6, seed=3, by="scene", shard_size=4)
    result = sample(cfg, LocalScenes(scenes), out)
    assert result["written"]["ok"] == 6 and result["index_rows"] == 6
    rows = _index(out)
    assert list(rows[0])[:3] == ["fn", "lon", "lat"]
    assert [r["fn"] for r in rows] == [f"patch_{i}.tif" for i in range(6)]
    to_utm = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
    for r in rows:
        with rasterio.open(out / "images" / r["fn"]) as ds:
            assert (ds.count, ds.height, ds.width, ds.dtypes[0]) == (12, 256, 256, "uint16")
            assert ds.res == (10.0, 10.0) and ds.crs.to_string() == CRS
            assert ds.profile["compress"] == "lzw" and ds.tags()["scene_id"] == r["scene_id"]
            assert ds.tags()["mgrs_tile"] == "32UNA" and r["datetime"].startswith("2022-07-01")
            pixels, bounds = ds.read(), ds.bounds
        # index lon/lat is the patch centre
        x, y = to_utm.transform(float(r["lon"]), float(r["lat"]))
        assert abs(x - (bounds.left + bounds.right) / 2) < 1e-3 and abs(y - (bounds.top + bounds.bottom) / 2) < 1e-3
        # pixels equal a direct read of the same window of the scene
        with rasterio.open(scenes / f"{r['scene_id']}.tif") as src:
            col, row = int(r["col_off"]), int(r["row_off"])
            np.testing.assert_array_equal(pixels, src.read(window=Window(col, row, 256, 256)))
    # a scene exactly one window large is used (its only window)
    assert any(r["scene_id"] == "b" and r["col_off"] == "0" and r["row_off"] == "0" for r in rows)
    # shards: two, done markers, webdataset members
    assert sorted(p.name for p in (out / "shards").iterdir()) == [
        "00000.parquet",
        "00000.tar",
        "00000_stats.json",
        "00001.parquet",
        "00001.tar",
        "00001_stats.json",
    ]
    import tarfile

    with tarfile.open(out / "shards" / "00000.tar") as tar:
        names = tar.getnames()
        assert "patch_0.tif" in names and "patch_0.json" in names
        assert tar.extractfile("patch_0.tif").read() == (out / "images" / "patch_0.tif").read_bytes()


def test_deterministic_and_resumable(scenes: Path, tmp_path: Path) -> None:
    cfg = SampleConfig(n=5, seed=7, by="scene", shard_size=2)
    a, b = tmp_path / "a", tmp_path / "b"
    sample(cfg, LocalScenes(scenes), a)
    sample(cfg, LocalScenes(scenes), b)
    assert (a / "index.csv").read_bytes() == (b / "index.csv").read_bytes()
    for i in range(5):
        assert (a / "images" / f"patch_{i}.tif").read_bytes() == (b / "images" / f"patch_{i}.tif").read_bytes()
    # threads draw concurrently but write in order: the same bytes
    d = tmp_path / "d"
    sample(cfg, LocalScenes(scenes), d, workers=3)
    assert (a / "index.csv").read_bytes() == (d / "index.csv").read_bytes()
    assert (a / "shards" / "00001.tar").read_bytes() == (d / "shards" / "00001.tar").read_bytes()
    # kill shard 1 (no done marker) and a patch of it: the rerun redoes exactly that shard
    (a / "shards" / "00001_stats.json").unlink()
    (a / "images" / "patch_3.tif").unlink()
    (a / "shards" / ".00001.tar.tmp-99999").write_bytes(b"half")  # what a SIGKILL leaves
    (a / "images" / ".patch_3.tif.tmp-99999").write_bytes(b"half")
    result = sample(cfg, LocalScenes(scenes), a)
    assert result["written"]["skipped_shards"] == 2 and result["written"]["ok"] == 2
    assert not [p for p in (a / "shards").iterdir() if ".tmp-" in p.name]
    assert not [p for p in (a / "images").iterdir() if ".tmp-" in p.name]
    assert (a / "images" / "patch_3.tif").read_bytes() == (b / "images" / "patch_3.tif").read_bytes()
    assert (a / "index.csv").read_bytes() == (b / "index.csv").read_bytes()
    other = SampleConfig(n=5, seed=8, by="scene", shard_size=2)
    with pytest.raises(OutputConflictError):
        sample(other, LocalScenes(scenes), a)
    # another seed gives other windows
    c = tmp_path / "c"
    sample(other, LocalScenes(scenes), c)
    assert (c / "index.csv").read_bytes() != (a / "index.csv").read_bytes()


def test_rejection_rules(tmp_path: Path) -> None:
    folder = tmp_path / "scenes"
    # 400 px wide, the first 100 columns zero in all bands: a window at column c is (100 - c)/256 zero,
    # so about half the windows (c < 75) hold more than 10 % zero and must never be kept.
    write_scene(folder / "z.tif", 400, 256, seed=4, zero_cols=100)
    out = tmp_path / "out"
    result = sample(SampleConfig(n=8, seed=1, by="scene", max_tries=50), LocalScenes(folder), out)
    rows = pq.read_table(out / "shards" / "00000.parquet").to_pylist()
    assert result["written"]["ok"] == 8
    for r in rows:
        with rasterio.open(out / "images" / r["fn"]) as ds:
            zero = (ds.read() == 0).all(axis=0).mean()
        assert zero <= 0.1 and r["zero_fraction"] == pytest.approx(zero)
        assert r["col_off"] >= 100 - 25  # at most 25 zero columns (25*256/65536 <= 10 %)
    stats = (out / "shards" / "00000_stats.json").read_text()
    assert '"zero"' in stats  # some windows were drawn and rejected
    # a scene that is all nodata (declared nodata value): every sample fails with the reason
    write_scene(tmp_path / "nd" / "n.tif", 256, 256, seed=5, nodata=1, zero_cols=0)
    with rasterio.open(tmp_path / "nd" / "n.tif", "r+") as ds:
        ds.write(np.ones((12, 256, 256), dtype=np.uint16))
    out2 = tmp_path / "out2"
    result = sample(SampleConfig(n=2, by="scene", max_tries=3), LocalScenes(tmp_path / "nd"), out2)
    assert result["written"]["failed"] == 2 and result["errors"] == {"nodata": 2}
    rows = pq.read_table(out2 / "shards" / "00000.parquet").to_pylist()
    assert all("nodata" in r["error_message"] and r["status"] == "failed" for r in rows)
    assert _index(out2) == []


def test_land_mode_inside_footprints(scenes: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = sample(SampleConfig(n=4, seed=2, by="land"), LocalScenes(scenes), out)
    assert result["written"]["ok"] == 4
    rows = _index(out)
    for r in rows:  # centres lie within the scenes' footprints (Hesse, Germany)
        assert 8.9 < float(r["lon"]) < 9.4 and 50.4 < float(r["lat"]) < 50.6


def test_bad_inputs(tmp_path: Path, scenes: Path) -> None:
    bad = tmp_path / "bad"
    write_scene(bad / "four.tif", 300, 300, count=4)
    result = sample(SampleConfig(n=1, by="scene", max_tries=2), LocalScenes(bad), tmp_path / "o")
    assert result["errors"] == {"bands": 1}
    rows = pq.read_table(tmp_path / "o" / "shards" / "00000.parquet").to_pylist()
    assert "4 bands, 12 needed" in rows[0]["error_message"]
    with pytest.raises(BadInputError, match="--by"):
        SampleConfig(n=1, by="pixels")
    with pytest.raises(BadInputError, match="--n"):
        SampleConfig(n=0)
    with pytest.raises(BadInputError, match="start"):
        SceneFilter(start="June")
    # filters: every scene is too cloudy
    with pytest.raises(BadInputError, match="filters"):
        sample(SampleConfig(n=1, by="scene", scenes=SceneFilter(max_cloud=1.0)), LocalScenes(scenes), tmp_path / "p")


@pytest.mark.slow
def test_dask_local_executor_gives_the_same_output(scenes: Path, tmp_path: Path) -> None:
    from pipeline.satclip.distribute import sample_on

    cfg = SampleConfig(n=6, seed=4, by="scene", shard_size=2)
    sample(cfg, LocalScenes(scenes), tmp_path / "a")
    result = sample_on("dask-local:2", cfg, f"local:{scenes}", tmp_path / "b", workers=2)
    assert result["written"]["ok"] == 6
    assert (tmp_path / "a" / "index.csv").read_bytes() == (tmp_path / "b" / "index.csv").read_bytes()
    for s in range(3):
        name = f"{s:05d}.tar"
        assert (tmp_path / "a" / "shards" / name).read_bytes() == (tmp_path / "b" / "shards" / name).read_bytes()


# SatCLIP's own index.csv for three of these patches (figures/ssl4eo/example/index.csv in microsoft/satclip).
SATCLIP_INDEX = {
    "ssl4eo_example_images_patch_286743": (42.70915790372338, 55.39499129966318),
    "ssl4eo_example_images_patch_322265": (-108.14226779342428, 51.18378532392021),
    "ssl4eo_example_images_patch_511198": (133.99117085234934, 35.25271334809917),
}


@pytest.mark.shared_data
def test_real_patches_centres_match_satclips_index(shared_data: Path, tmp_path: Path) -> None:
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    for name in SATCLIP_INDEX:
        (scenes / f"{name}.tif").symlink_to(shared_data / "imagery" / "sentinel2" / f"{name}.tif")
    out = tmp_path / "out"
    sample(SampleConfig(n=9, seed=0, by="scene"), LocalScenes(scenes), out)
    rows = _index(out)
    assert {r["scene_id"] for r in rows} == set(SATCLIP_INDEX)
    for r in rows:
        lon, lat = SATCLIP_INDEX[r["scene_id"]]
        assert float(r["lon"]) == pytest.approx(lon, abs=1e-5) and float(r["lat"]) == pytest.approx(lat, abs=1e-5)
        with rasterio.open(out / "images" / r["fn"]) as ds, rasterio.open(scenes / f"{r['scene_id']}.tif") as src:
            np.testing.assert_array_equal(ds.read(), src.read())
            assert ds.transform == src.transform and ds.crs == src.crs
