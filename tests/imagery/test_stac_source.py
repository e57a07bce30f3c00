"""StacSource against the loopback STAC API: chips equal direct reads, mosaics, retries, signing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import ImageryError
from pipeline.imagery.catalog import load_catalog
from pipeline.imagery.http import HttpPolicy
from pipeline.imagery.stac import StacSource
from tests.imagery.remote_fixtures import RES, SIZE, X0, Y0, catalog_file, direct, request, scene
from tests.servers.stac_api import Scene, StacServer

FAST = HttpPolicy(attempts=4, backoff_s=0.01, max_backoff_s=0.05)


@pytest.fixture()
def scenes(tmp_path: Path) -> dict[str, Path]:
    a = scene(tmp_path, "a", X0, Y0, seed=1)
    b = scene(tmp_path, "b", X0 + SIZE * RES, Y0, seed=2)  # east neighbour of a
    old = scene(tmp_path, "old", X0, Y0, seed=3)  # same ground as a, older
    return {"a": a, "b": b, "old": old}


def _catalog(tmp_path: Path, url: str | None = None, extra: str = "") -> Path:
    return catalog_file(tmp_path, f"""
collections:
  - id: fixture/rgb
    source: stac
    collection: rgb
    url: {url or 'null'}
    gsd: {RES}
    bands: ["visual:1", "visual:2", "visual:3"]
    range: [0, 255]
    coverage: global
    dates: [2020-01-01, null]
    pick: most-recent
{extra}
""")


@pytest.fixture()
def server(scenes: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("SKYSCRIPT_CACHE", str(tmp_path / "cache"))
    items = [
        Scene("a", "rgb", "2022-06-01T10:00:00Z", {"visual": scenes["a"]}, cloud_cover=10),
        Scene("b", "rgb", "2022-05-01T10:00:00Z", {"visual": scenes["b"]}, cloud_cover=0),
        Scene("old", "rgb", "2021-06-01T10:00:00Z", {"visual": scenes["old"]}, cloud_cover=0),
        Scene("ancient", "rgb", "2019-06-01T10:00:00Z", {"visual": scenes["old"]}, cloud_cover=0),
    ]
    with StacServer(items) as srv:
        yield srv


def _source(srv: StacServer, tmp_path: Path, **kw) -> StacSource:
    cat = load_catalog(_catalog(tmp_path, srv.url))
    return StacSource(srv.url, cat.for_source("stac"), policy=FAST, **kw)


def test_chip_equals_direct_read_of_most_recent(server: StacServer, scenes: dict[str, Path], tmp_path: Path) -> None:
    src = _source(server, tmp_path)
    chip = src.read(request("w1", 100, 50, 128, "fixture/rgb"))
    assert np.array_equal(chip.pixels, direct(scenes["a"], 100, 50, 128))
    assert chip.image_id == "a" and chip.acquired == "2022-06-01"
    assert chip.provenance["image_ids"] == ["a"] and chip.provenance["cloud_cover"] == [10]
    assert server.range_requests > 0


def test_mosaic_across_two_items(server: StacServer, scenes: dict[str, Path], tmp_path: Path) -> None:
    src = _source(server, tmp_path)
    chip = src.read(request("w2", SIZE - 40, 10, 100, "fixture/rgb"))  # 40 px from a, 60 from b
    assert np.array_equal(chip.pixels[:, :40], direct(scenes["a"], SIZE - 40, 10, 100)[:, :40])
    assert np.array_equal(chip.pixels[:, 40:], direct(scenes["b"], 0, 10, 100)[:, :60])
    assert chip.provenance["image_ids"] == ["a", "b"]


def test_search_retries_429_and_503_then_caches(server: StacServer, tmp_path: Path) -> None:
    src = _source(server, tmp_path)
    server.inject("search", ["429", "503"])
    src.read(request("w3", 0, 0, 64, "fixture/rgb"))
    assert server.hits["search"] == 3
    StacSource(server.url, src.entries.values(), policy=FAST).read(request("w3", 0, 0, 64, "fixture/rgb"))
    assert server.hits["search"] == 3  # the same search again came from the cache


def test_search_gives_up_after_bounded_retries(server: StacServer, tmp_path: Path) -> None:
    src = _source(server, tmp_path, use_cache=False)
    src._client()
    server.inject("search", ["503"] * 10)
    with pytest.raises(ImageryError, match="STAC search"):
        src.read(request("w4", 0, 0, 64, "fixture/rgb"))
    assert server.hits["search"] == FAST.attempts


def test_least_cloudy_and_cloud_filter(server: StacServer, scenes: dict[str, Path], tmp_path: Path) -> None:
    cat = load_catalog(_catalog(tmp_path, server.url, """
  - id: fixture/clear
    source: stac
    collection: rgb
    gsd: 0.5
    bands: ["visual:1", "visual:2", "visual:3"]
    range: [0, 255]
    coverage: global
    dates: [2020-01-01, null]
    pick: least-cloudy
    cloud_property: eo:cloud_cover
    max_cloud: 5
"""))
    src = StacSource(server.url, cat.for_source("stac"), policy=FAST)
    chip = src.read(request("w5", 10, 10, 64, "fixture/clear"))
    assert chip.image_id == "old"  # "a" is cloudier than 5 %; "ancient" is before the start date
    assert np.array_equal(chip.pixels, direct(scenes["old"], 10, 10, 64))
    assert server.search_bodies[-1]["query"] == {"eo:cloud_cover": {"lte": 5.0}}


def test_nothing_in_date_range_is_a_clear_error(server: StacServer, tmp_path: Path) -> None:
    cat = load_catalog(_catalog(tmp_path, server.url, """
  - id: fixture/future
    source: stac
    collection: rgb
    gsd: 0.5
    bands: [visual]
    range: [0, 255]
    coverage: global
    dates: [2023-01-01, 2023-12-31]
""".replace("[visual]", '["visual:1", "visual:2", "visual:3"]')))
    src = StacSource(server.url, cat.for_source("stac"), policy=FAST)
    with pytest.raises(ImageryError, match="no_imagery: no fixture/future item"):
        src.read(request("w6", 0, 0, 64, "fixture/future"))


def test_empty_window_rejected_above_max_nodata(server: StacServer, tmp_path: Path) -> None:
    src = _source(server, tmp_path, max_nodata_frac=0.05)
    with pytest.raises(ImageryError, match="nodata"):  # half the tile lies north of every scene
        src.read(request("w7", 0, -32, 64, "fixture/rgb"))


def test_planetary_computer_style_signing(scenes: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SKYSCRIPT_CACHE", str(tmp_path / "cache"))
    with StacServer([Scene("a", "rgb", "2022-06-01T10:00:00Z", {"visual": scenes["a"]})], require_token=True) as srv:
        unsigned = _source(srv, tmp_path)
        with pytest.raises(ImageryError, match="reading"):
            unsigned.read(request("w8", 0, 0, 64, "fixture/rgb"))
        cat = load_catalog(_catalog(tmp_path, srv.url).parent / "catalog.yaml")
        signed_cat = tmp_path / "signed.yaml"
        signed_cat.write_text((tmp_path / "catalog.yaml").read_text().replace(
            "    gsd:", f"    sign: planetary-computer\n    sign_url: {srv.url}/api/sas/v1\n    gsd:", 1))
        cat = load_catalog(signed_cat)
        chip = StacSource(srv.url, cat.for_source("stac"), policy=FAST).read(request("w9", 0, 0, 64, "fixture/rgb"))
        assert np.array_equal(chip.pixels, direct(scenes["a"], 0, 0, 64))
        assert srv.hits["token"] == 1


def test_hung_search_times_out_and_is_retried(server: StacServer, tmp_path: Path) -> None:
    server.hang_s = 1.5
    src = _source(server, tmp_path)
    src.policy = HttpPolicy(attempts=3, backoff_s=0.01, read_timeout_s=0.4)
    src._client()
    server.inject("search", ["hang"])
    chip = src.read(request("w10", 0, 0, 64, "fixture/rgb"))
    assert chip.image_id == "a" and server.hits["search"] == 2


def test_cog_503_is_retried_by_gdal(server: StacServer, scenes: dict[str, Path], tmp_path: Path) -> None:
    src = _source(server, tmp_path)
    server.inject("files", ["503"])
    chip = src.read(request("w11", 30, 30, 64, "fixture/rgb"))
    assert np.array_equal(chip.pixels, direct(scenes["a"], 30, 30, 64))


def test_source_pickles_for_dask_workers(server: StacServer, scenes: dict[str, Path], tmp_path: Path) -> None:
    import pickle

    src = _source(server, tmp_path)
    src.read(request("w12", 0, 0, 32, "fixture/rgb"))
    clone = pickle.loads(pickle.dumps(src))
    assert np.array_equal(clone.read(request("w13", 8, 8, 32, "fixture/rgb")).pixels, direct(scenes["a"], 8, 8, 32))


def test_closest_to_date_order() -> None:
    from pipeline.imagery.remote import Scene as S
    from pipeline.imagery.remote import order_scenes

    scenes = [S("x", "2020-01-01T00:00:00Z"), S("y", "2021-06-01T00:00:00Z"), S("z", "2022-01-01T00:00:00Z", 3.0)]
    assert [s.id for s in order_scenes(scenes, "closest-to-date", "2021-05-01")] == ["y", "z", "x"]
    assert [s.id for s in order_scenes(scenes, "most-recent")] == ["z", "y", "x"]
    assert order_scenes(scenes, "least-cloudy")[0].id == "z"
