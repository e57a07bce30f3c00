"""The ``build-skyscript`` flow: parameters validated up front, and build → score → filter end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from flows.params import ParameterError, validate
from storage import shards as sh
from tests.fakes import FakeArea
from tests.ops.conftest import PrefectServer


def _good(area: FakeArea, tmp_path: Path) -> dict[str, Any]:
    return {"osm": str(area.osm), "imagery": f"local:{area.imagery_dir}", "out": str(tmp_path / "o")}


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"osm": "/nonexistent/x.osm.pbf"}, "osm"),
        ({"imagery": "ftp:/x"}, "imagery"),
        ({"imagery": ["local:/nonexistent/a", "ftp:/b"]}, "imagery"),
        ({"imagery": []}, "imagery"),
        ({"bbox": "10,0,5,1"}, "bbox"),
        ({"max_objects": -3}, "max_objects"),
        ({"max_objects": "many"}, "max_objects"),
        ({"seed": -1}, "seed"),
        ({"executor": "spark"}, "executor"),
        ({"executor": "dask:tcp://127.0.0.1:1"}, "executor"),  # nothing listens there
        ({"preset": "nope"}, "preset"),
        ({"config": "/nonexistent/c.yaml"}, "config"),
        ({"top": [20, 120]}, "top"),
        ({"overwrite": "yes"}, "overwrite"),
    ],
)
def test_bad_parameter_is_named(ops_area: FakeArea, tmp_path: Path, change: dict[str, Any], name: str) -> None:
    with pytest.raises(ParameterError, match=rf"^parameter {name}: "):
        validate(**{**_good(ops_area, tmp_path), **change})
    assert not (tmp_path / "o").exists()


def test_good_parameters_resolve(ops_area: FakeArea, tmp_path: Path) -> None:
    p = validate(**{**_good(ops_area, tmp_path), "imagery": [f"local:{ops_area.imagery_dir}"]}, max_objects=5,
                 top=30, preset="tiny", bbox="32.5,0.3,32.6,0.4")
    assert p.imagery == f"local:{ops_area.imagery_dir}" and p.cfg.max_objects == 5 and p.top == (30,)
    assert p.score_model is None and p.bbox is not None and p.bbox.west == 32.5
    two = validate(**{**_good(ops_area, tmp_path), "imagery": [f"local:{ops_area.imagery_dir}"] * 2})
    assert two.imagery == (f"local:{ops_area.imagery_dir}",) * 2  # the catalog router's input


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_flow_builds_scores_and_filters(
    prefect_server: PrefectServer, ops_area: FakeArea, tiny_model: str, tiny_ckpt: Path, tmp_path: Path
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.build import build_skyscript_flow

    model, ckpt = tiny_model, tiny_ckpt
    out = tmp_path / "scored"
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        summary = build_skyscript_flow(osm=str(ops_area.osm), imagery=f"local:{ops_area.imagery_dir}", out=str(out),
                                       max_objects=12, preset="tiny", score_model=f"{model}:{ckpt}", top=[20, 50])
    ok = [r["key"] for r in sh.read_rows(out / "shards").to_pylist() if r["status"] == "ok"]
    assert summary["written"] == len(ok) > 0
    scored = pq.read_table(out / "scores").to_pylist() if (out / "scores").is_file() else [
        row for f in sorted((out / "scores").glob("[0-9]*.parquet")) for row in pq.read_table(f).to_pylist()]
    assert sorted(r["key"] for r in scored) == sorted(ok)
    for top in (20, 50):
        kept = pq.read_table(out / "selections" / f"top{top:02d}.parquet").to_pylist()
        assert len(kept) == int(len(ok) * top / 100 + 0.5)
    assert summary["selections"] == [f"{out}/selections/top20.parquet", f"{out}/selections/top50.parquet"]

    from flows.steps import score_flow

    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):  # re-filter, no re-scoring
        score_flow(out=str(out), score_model=f"{model}:{ckpt}", top=30)
    assert len(pq.read_table(out / "selections" / "top30.parquet")) == int(len(ok) * 0.3 + 0.5)


def test_step_flows_check_parameters_and_build_options(tmp_path: Path) -> None:
    from flows.steps import option_args, score_flow, train_skyclip_flow

    assert option_args({"epochs": 5, "batch_size": 256, "rotate": False, "resume": True, "lr": None}) == [
        "--epochs", "5", "--batch-size", "256", "--no-rotate", "--resume"]
    with pytest.raises(ParameterError, match=r"^parameter out: .*run\.json"):
        score_flow.fn(out=str(tmp_path))
    with pytest.raises(ParameterError, match=r"^parameter caption: "):
        (tmp_path / "shards").mkdir()
        train_skyclip_flow.fn(data=str(tmp_path), out=str(tmp_path / "m"), caption="both")
