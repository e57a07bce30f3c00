"""``skyscript build`` from the command line: success, one-line errors, SIGKILL + resume, Prefect."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from storage import shards as sh
from tests.fakes import FakeArea, make_fake_area

SKYSCRIPT = [sys.executable, "-m", "pipeline.cli"]


@pytest.fixture(scope="module")
def area(tmp_path_factory: pytest.TempPathFactory) -> FakeArea:
    return make_fake_area(tmp_path_factory.mktemp("cli_area"), seed=5, n_buildings=30)


def _args(area: FakeArea, out: Path) -> list[str]:
    return ["build", "--osm", str(area.osm), "--imagery", f"local:{area.imagery_dir}", "--out", str(out),
            "--preset", "tiny"]


def test_build_command_succeeds(area: FakeArea, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, [*_args(area, tmp_path / "o"), "--max-objects", "6", "--seed", "2"])
    assert res.exit_code == 0, res.output
    assert "samples written" in res.output
    assert len(sh.read_rows(tmp_path / "o" / "shards")) == 6


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--bbox", "10,0,5,1"], "west"),
        (["--max-objects", "0"], "max-objects"),
        (["--config", "/nonexistent/c.yaml"], "c.yaml"),
    ],
)
def test_bad_arguments_give_one_line_errors(
    area: FakeArea, tmp_path: Path, extra: list[str], needle: str
) -> None:
    res = CliRunner().invoke(app, [*_args(area, tmp_path / "o"), *extra])
    assert res.exit_code == 2
    assert needle in res.output and "Traceback" not in res.output


def test_missing_osm_file(area: FakeArea, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["build", "--osm", str(tmp_path / "nope.osm.pbf"), "--imagery",
                                   f"local:{area.imagery_dir}", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "nope.osm.pbf" in res.output


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PREFECT_HOME=str(tmp_path / "prefect_home"), PYTHONPATH=str(Path(__file__).parents[1]),
               # A busy 2-core CI machine can take far longer than Prefect's default to start the
               # ephemeral server (issue 10, "Flaky under load").
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="300", PREFECT_API_REQUEST_TIMEOUT="120")
    return env


@pytest.mark.slow
def test_sigkill_mid_build_then_rerun_is_lossless(area: FakeArea, tmp_path: Path) -> None:
    cfg = tmp_path / "small_shards.yaml"
    cfg.write_text("shards:\n  shard_size: 2\nplanner:\n  tile_px_min: 256\n  tile_px_max: 512\n")
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    args = ["--config", str(cfg)]
    subprocess.run([*SKYSCRIPT, *_args(area, clean), *args], check=True, env=_env(tmp_path),
                   capture_output=True)
    total = len(sh.done_shards(clean / "shards"))
    proc = subprocess.Popen([*SKYSCRIPT, *_args(area, killed), *args], env=_env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not sh.done_shards(killed / "shards") and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_at_kill = len(sh.done_shards(killed / "shards"))
    assert 0 < done_at_kill < total, "the build was not interrupted mid-way"
    subprocess.run([*SKYSCRIPT, *_args(area, killed), *args], check=True, env=_env(tmp_path),
                   capture_output=True)
    a = {s["key"]: s for s in sh.iter_samples(clean / "shards")}
    b = {s["key"]: s for s in sh.iter_samples(killed / "shards")}
    assert a.keys() == b.keys()
    assert all(a[k]["jpg"] == b[k]["jpg"] and a[k]["json"] == b[k]["json"] for k in a)
    keys = [r["key"] for r in sh.read_rows(killed / "shards").to_pylist()]
    assert len(keys) == len(set(keys))  # none twice
    assert not [p for p in (killed / "shards").iterdir() if sh.TMP_MARK in p.name]


@pytest.mark.slow
@pytest.mark.timeout(600)  # the ephemeral Prefect server took 140 s to start beside a CPU hog
def test_build_runs_as_prefect_flow(area: FakeArea, tmp_path: Path) -> None:
    out = tmp_path / "pf"
    res = subprocess.run([*SKYSCRIPT, *_args(area, out), "--max-objects", "4", "--prefect"],
                         env=_env(tmp_path), capture_output=True, text=True, timeout=540)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "build-skyscript" in res.stderr + res.stdout
    assert len(sh.read_rows(out / "shards")) == 4


@pytest.mark.slow
def test_dask_executor_gives_identical_shards(area: FakeArea, tmp_path: Path) -> None:
    common = ["--max-objects", "8", "--config", str(_small_shards(tmp_path))]
    subprocess.run([*SKYSCRIPT, *_args(area, tmp_path / "local"), *common], check=True, env=_env(tmp_path),
                   capture_output=True)
    subprocess.run([*SKYSCRIPT, *_args(area, tmp_path / "dask"), *common, "--executor", "dask-local:2"],
                   check=True, env=_env(tmp_path), capture_output=True, timeout=240)
    local_shards = sorted((tmp_path / "local" / "shards").glob("*.tar"))
    assert len(local_shards) == 4
    for p in local_shards:
        assert p.read_bytes() == (tmp_path / "dask" / "shards" / p.name).read_bytes()


def _small_shards(tmp_path: Path) -> Path:
    cfg = tmp_path / "two_per_shard.yaml"
    cfg.write_text("shards:\n  shard_size: 2\n")
    return cfg


def test_unknown_executor_is_explained(area: FakeArea, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, [*_args(area, tmp_path / "o"), "--executor", "spark"])
    assert res.exit_code == 2 and "unknown executor" in res.output
