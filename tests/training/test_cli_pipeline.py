"""The whole chain through the CLI on a real (fake-area) build: score → filter → split → export →
train skyclip → eval retrieval, with one-line errors for bad input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.build import BuildInputs, build
from pipeline.cli import app
from pipeline.config import load_config
from tests.fakes import make_fake_area

runner = CliRunner()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("built")
    area = make_fake_area(root / "area", seed=5, n_buildings=16)
    cfg = load_config(preset="tiny")
    cfg = cfg.replace(caption=dataclasses.replace(cfg.caption, unknown_tags="drop"),
                      shards=dataclasses.replace(cfg.shards, shard_size=8))
    out = root / "out"
    build(BuildInputs(osm=str(area.osm), imagery=f"local:{area.imagery_dir}", out=str(out)), cfg, log=lambda m: None)
    return out


def _ok(args: list[str]) -> str:
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output + repr(r.exception)
    return r.output


@pytest.mark.slow
def test_chain_through_the_cli(built: Path, tiny_ckpt: Path, tmp_path: Path) -> None:
    out = built
    n_ok = sum(r["status"] == "ok" for r in pq.read_table(sorted((out / "shards").glob("*.parquet"))).to_pylist())
    assert n_ok >= 8
    text = _ok(["score", str(out), "--model", "tiny-score-test", "--pretrained", str(tiny_ckpt), "--device", "cpu",
                "--workers", "0", "--batch-size", "4"])
    assert f"scored {n_ok} pairs" in text
    assert "0 pairs" in _ok(["score", str(out), "--model", "tiny-score-test", "--pretrained", str(tiny_ckpt),
                             "--device", "cpu", "--workers", "0"])  # resumed: nothing left to do
    assert "kept" in _ok(["filter", str(out), "--top", "50"])
    assert "kept" in _ok(["filter", str(out), "--top", "100"])
    _ok(["split", str(out), "--test-frac", "0.3", "--block-deg", "0.0003"])
    exp = tmp_path / "export"
    _ok(["export", str(out), "--selection", "top50", "--format", "csv", "--out", str(exp)])
    assert list(exp.glob("SkyScript_*_top50pct_filtered_by_*.csv"))
    run = tmp_path / "run"
    ckpt = _ok(["train", "skyclip", "--data", str(out), "--selection", "top100", "--model", "tiny-score-test",
                "--pretrained", str(tiny_ckpt), "--out", str(run), "--epochs", "1", "--batch-size", "2",
                "--device", "cpu", "--workers", "0", "--lr", "1e-3"]).strip().splitlines()[-1]
    assert ckpt.endswith("epoch_1.pt") and Path(ckpt).is_file()
    res_path = tmp_path / "retrieval.json"
    _ok(["eval", "retrieval", "--checkpoint", ckpt, "--data", str(out), "--split", "test", "--device", "cpu",
         "--workers", "0", "--json", str(res_path)])
    res = json.loads(res_path.read_text())
    assert res["samples"] >= 2 and {"image_to_text_R@1", "text_to_image_R@10", "mean_recall"} <= set(res)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["filter", "{out}", "--top", "0"], "between 1 and 100"),
        (["filter", "{out}", "--top", "50", "--by", "both"], "--by"),
        (["export", "{out}", "--selection", "top07", "--out", "{tmp}"], "skyscript filter"),
        (["score", "{out}", "--device", "cuda", "--model", "tiny-score-test", "--pretrained", "none"], "CUDA"),
        (["split", "{out}", "--test-frac", "2"], "--test-frac"),
        (["eval", "zeroshot", "--checkpoint", "none", "--model", "tiny-score-test", "--dataset", "NoSuchSet"],
         "not a folder"),
    ],
)
def test_one_line_errors(built: Path, tiny_model: str, tmp_path: Path, args: list[str], message: str) -> None:
    import torch

    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = runner.invoke(app, [a.format(out=built, tmp=tmp_path) for a in args])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output
