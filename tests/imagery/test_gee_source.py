"""GeeSource against the loopback Earth Engine REST server (real discovery document, real rasters)."""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import GeeConfig, ImageryConfig
from pipeline.errors import BadInputError, ImageryError
from pipeline.imagery.catalog import load_catalog
from pipeline.imagery.gee import GeeSource, resolve_credentials
from pipeline.retry import RetryPolicy
from tests.imagery.remote_fixtures import RES, SIZE, X0, Y0, catalog_file, direct, request, scene
from tests.servers.earth_engine import Asset, EarthEngineServer

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)
TOKEN = "fixture-token"
CATALOG = """
collections:
  - id: users/me/drone            # a user's own upload: just another entry
    source: gee
    gsd: 0.5
    bands: [R, G, B]
    range: [0, 255]
    coverage: [8.9, 47.7, 9.1, 47.9]
    dates: [2020-01-01, null]
    pick: most-recent
  - id: users/me/mosaic
    source: gee
    type: Image
    gsd: 0.5
    bands: [R, G, B]
    range: [0, 255]
    coverage: global
  - id: users/me/missing
    source: gee
    gsd: 0.5
    bands: [R, G, B]
    range: [0, 255]
    coverage: global
"""


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    return {"a": scene(tmp_path, "a", X0, Y0, 1), "b": scene(tmp_path, "b", X0 + SIZE * RES, Y0, 2),
            "old": scene(tmp_path, "old", X0, Y0, 3)}


@pytest.fixture()
def server(files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SKYSCRIPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SKYSCRIPT_EE_TOKEN", TOKEN)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    assets = [
        Asset("users/me/drone/a", files["a"], ["R", "G", "B"], "2022-06-01"),
        Asset("users/me/drone/b", files["b"], ["R", "G", "B"], "2022-05-01"),
        Asset("users/me/drone/old", files["old"], ["R", "G", "B"], "2019-06-01"),
        Asset("users/me/mosaic", files["old"], ["R", "G", "B"], "2021-03-01"),
    ]
    with EarthEngineServer(assets, collections={"users/me/drone": ["users/me/drone/a", "users/me/drone/b",
                                                                  "users/me/drone/old"]}, token=TOKEN) as srv:
        yield srv


def _source(srv: EarthEngineServer, tmp_path: Path, **cfg) -> GeeSource:
    cat = load_catalog(catalog_file(tmp_path, CATALOG))
    icfg = ImageryConfig(gee=GeeConfig(url=srv.url, max_concurrent=cfg.pop("max_concurrent", 20)), **cfg)
    return GeeSource("my-project", cat.for_source("gee"), icfg, policy=FAST)


def test_chip_equals_direct_read_with_provenance(server, files, tmp_path) -> None:
    src = _source(server, tmp_path)
    assert server.hits["compute"] == 1  # the start-up check of endpoint and credentials
    server.hits.clear()
    chip = src.read(request("w1", 100, 50, 128, "users/me/drone"))
    assert np.array_equal(chip.pixels, direct(files["a"], 100, 50, 128))
    assert chip.image_id.split(",")[0] == "users/me/drone/a" and chip.acquired == "2022-06-01"
    assert "users/me/drone/old" not in chip.provenance["image_ids"]  # before the entry's start date
    assert server.hits["compute"] == 1 and server.hits["pixels"] == 1  # one metadata request per chip
    grid = server.bodies[-1]["grid"]
    assert grid["crsCode"] == "EPSG:32632" and grid["dimensions"] == {"width": 128, "height": 128}
    assert grid["affineTransform"]["translateX"] == X0 + 100 * RES
    src.read(request("w1", 100, 50, 128, "users/me/drone"))
    assert server.hits["compute"] == 1  # the same search again came from the cache
    assert TOKEN not in str(src.describe())


def test_mosaic_across_two_images(server, files, tmp_path) -> None:
    chip = _source(server, tmp_path).read(request("w2", SIZE - 40, 10, 100, "users/me/drone"))
    assert np.array_equal(chip.pixels[:, :40], direct(files["a"], SIZE - 40, 10, 100)[:, :40])
    assert np.array_equal(chip.pixels[:, 40:], direct(files["b"], 0, 10, 100)[:, :60])


def test_single_image_asset(server, files, tmp_path) -> None:
    chip = _source(server, tmp_path).read(request("w3", 5, 5, 64, "users/me/mosaic"))
    assert np.array_equal(chip.pixels, direct(files["old"], 5, 5, 64))
    assert chip.acquired == "2021-03-01"


def test_429_and_503_are_retried(server, tmp_path) -> None:
    src = _source(server, tmp_path)
    server.inject("pixels", ["429", "503"])
    src.read(request("w4", 0, 0, 64, "users/me/drone"))
    assert server.hits["pixels"] == 3


def test_memory_limit_is_a_failed_row_without_retries(server, tmp_path) -> None:
    src = _source(server, tmp_path)
    server.inject("pixels", ["memory"])
    with pytest.raises(ImageryError, match="User memory limit exceeded"):
        src.read(request("w5", 0, 0, 64, "users/me/drone"))
    assert server.hits["pixels"] == 1


def test_unknown_asset_and_empty_dates(server, tmp_path) -> None:
    src = _source(server, tmp_path)
    with pytest.raises(ImageryError, match="not found"):
        src.read(request("w6", 0, 0, 64, "users/me/missing"))
    with pytest.raises(ImageryError, match="no_imagery"):  # north of every image
        src.read(request("w7", 0, -2000, 64, "users/me/drone"))


def test_all_nodata_window_rejected(server, tmp_path) -> None:
    with pytest.raises(ImageryError, match="nodata"):
        _source(server, tmp_path).read(request("w8", -40, 0, 64, "users/me/mosaic"))


def test_bad_token_is_a_one_line_startup_error(server, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SKYSCRIPT_EE_TOKEN", "expired-token")
    with pytest.raises(BadInputError, match="cannot start Earth Engine") as info:
        _source(server, tmp_path)
    assert "expired-token" not in str(info.value) and "\n" not in str(info.value)


def test_credentials_order(tmp_path, monkeypatch) -> None:
    both = {"SKYSCRIPT_EE_TOKEN": "t", "GOOGLE_APPLICATION_CREDENTIALS": "x"}
    assert resolve_credentials(both)[1] == "SKYSCRIPT_EE_TOKEN"
    with pytest.raises(BadInputError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        resolve_credentials({"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "nope.json")})
    monkeypatch.setenv("HOME", str(tmp_path))  # no stored `earthengine authenticate` credentials
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    with pytest.raises(BadInputError, match="no Earth Engine credentials"):
        resolve_credentials({})


def _worker(url: str, catalog: str, cache: str, n: int, out: mp.Queue) -> None:
    import os

    os.environ.update(SKYSCRIPT_CACHE=cache, SKYSCRIPT_EE_TOKEN=TOKEN, NO_GCE_CHECK="true")
    cat = load_catalog(catalog)
    src = GeeSource("my-project", cat.for_source("gee"),
                    ImageryConfig(gee=GeeConfig(url=url, max_concurrent=2)), policy=FAST)
    reqs = [request(f"w{os.getpid()}_{i}", 8 * i, 8 * i, 32, "users/me/drone") for i in range(n)]
    with ThreadPoolExecutor(4) as pool:
        chips = list(pool.map(src.read, reqs))
    out.put(len(chips))


@pytest.mark.slow
def test_max_concurrent_holds_across_processes(server, tmp_path) -> None:
    server.latency_s = 0.15
    catalog = str(catalog_file(tmp_path, CATALOG))
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(server.url, catalog, str(tmp_path / "cache"), 6, q)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert sorted(q.get(timeout=5) for _ in procs) == [6, 6, 6]
    assert server.hits["pixels"] == 18
    assert server.max_in_flight == 2  # reached, never exceeded, by 3 processes x 4 threads


def test_hung_request_times_out_and_is_retried(server, files, tmp_path) -> None:
    import pipeline.imagery.gee as gee

    server.hang_s = 1.5
    src = _source(server, tmp_path)
    gee._INITIALISED["http"].timeout_s = 0.4  # the process's transport: a short read timeout
    server.inject("pixels", ["hang"])
    chip = src.read(request("w9", 3, 3, 32, "users/me/drone"))
    assert np.array_equal(chip.pixels, direct(files["a"], 3, 3, 32)) and server.hits["pixels"] == 2


def test_router_with_gee_pickles(server, tmp_path) -> None:
    import pickle

    from pipeline.imagery.router import ImageryRouter

    cat = load_catalog(catalog_file(tmp_path, CATALOG))
    router = ImageryRouter(["gee:my-project"], ImageryConfig(gee=GeeConfig(url=server.url)), catalog=cat)
    clone = pickle.loads(pickle.dumps(router))
    assert clone.read(request("w10", 0, 0, 32, "users/me/drone")).source == "gee"
