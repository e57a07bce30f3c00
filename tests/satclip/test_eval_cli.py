"""``skyscript eval location`` probes and the three CLI commands end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.errors import BadInputError
from tests.satclip.synth import write_scene
from tests.satclip.test_location import _released_style_checkpoint
from training.satclip.evaluate import ProbeConfig, evaluate_location

runner = CliRunner()


def _table(path: Path, n: int = 400, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lon, lat = rng.uniform(-180, 180, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    temp = 30 * np.cos(np.radians(lat)) - 5 + rng.normal(0, 1, n)  # warm equator, cold poles
    cls = (np.abs(lat) > 40).astype(int) + (lon > 0).astype(int) * 2
    import pandas as pd

    pd.DataFrame({"lon": lon, "lat": lat, "temp": temp, "zone": cls}).to_csv(path, index=False)
    return path


def test_probe_regression_and_classification(tmp_path: Path) -> None:
    ckpt = tmp_path / "c.ckpt"
    _released_style_checkpoint(ckpt, capacity=64, embed=32)
    table = _table(tmp_path / "t.csv")
    reg = evaluate_location(ckpt, table, ProbeConfig(target="temp", folds=4, block_deg=30))
    assert reg["task"] == "regression" and reg["blocks"] >= 4
    for side in ("encoder", "lonlat_baseline"):
        assert set(reg[side]) == {"r2", "mae", "rmse"}
    # a linear model on raw lon/lat cannot represent cos(lat); the harmonics can
    assert reg["encoder"]["r2"]["mean"] > reg["lonlat_baseline"]["r2"]["mean"]
    cls = evaluate_location(ckpt, table, ProbeConfig(target="zone", folds=4, block_deg=30))
    assert cls["task"] == "classification" and 0 <= cls["encoder"]["accuracy"]["mean"] <= 1
    with pytest.raises(BadInputError, match="lacks column"):
        evaluate_location(ckpt, table, ProbeConfig(target="nope"))
    with pytest.raises(BadInputError, match="spatial blocks"):
        evaluate_location(ckpt, table, ProbeConfig(target="temp", folds=5, block_deg=180))


@pytest.mark.slow
def test_cli_sample_train_eval(tmp_path: Path) -> None:
    scenes = tmp_path / "scenes"
    places = [("EPSG:32632", 500_000, 5_600_000), ("EPSG:32618", 500_000, 4_500_000)]
    for k, (crs, x0, y0) in enumerate(places):
        write_scene(scenes / f"s{k}.tif", 300, 300, seed=k, x0=x0, y0=y0, crs=crs)
    data = tmp_path / "data"
    r = runner.invoke(
        app,
        [
            "satclip",
            "sample",
            "--n",
            "4",
            "--imagery",
            f"local:{scenes}",
            "--out",
            str(data),
            "--by",
            "scene",
            "--seed",
            "1",
        ],
    )
    assert r.exit_code == 0, r.output
    assert len((data / "index.csv").read_text().splitlines()) == 5
    r = runner.invoke(app, ["satclip", "sample", "--n", "4", "--imagery", "gee:my-project", "--out", str(data)])
    assert r.exit_code == 2 and "Earth Engine" in r.output  # no credentials / endpoint here: a one-line error
    run = tmp_path / "run"
    r = runner.invoke(
        app,
        [
            "train",
            "satclip",
            "--data",
            str(data),
            "--legendre",
            "10",
            "--vision",
            "vit",
            "--out",
            str(run),
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--image-size",
            "64",
            "--vit-patch",
            "32",
            "--vit-width",
            "32",
            "--vit-layers",
            "1",
            "--capacity",
            "32",
            "--embed-dim",
            "16",
            "--val-fraction",
            "0.5",
        ],
    )
    assert r.exit_code == 0, r.output
    assert (run / "last.ckpt").is_file()
    summary = [
        json.loads(x)["epoch_summary"] for x in (run / "metrics.jsonl").read_text().splitlines() if "epoch_summary" in x
    ]
    assert summary[-1]["samples"] == 2 and summary[-1]["val_samples"] == 2 and summary[-1]["val_loss"] > 0
    r = runner.invoke(app, ["train", "satclip", "--data", str(tmp_path / "none"), "--out", str(run)])
    assert r.exit_code == 2 and "index.csv" in r.output
    table = _table(tmp_path / "t.csv", n=120)
    r = runner.invoke(
        app,
        [
            "eval",
            "location",
            "--checkpoint",
            str(run / "last.ckpt"),
            "--table",
            str(table),
            "--target",
            "temp",
            "--folds",
            "3",
            "--block-deg",
            "30",
            "--out",
            str(tmp_path / "r.json"),
        ],
    )
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert "encoder" in report and "lonlat_baseline" in report
