"""skyscript filter: exact top fraction, deterministic ties, reshard; fast start-up; bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.errors import BadInputError, InputFileError
from storage.scores import write_scores
from storage.selection import FilterConfig, filter_scores, keep_count, read_selection, reshard, select_top
from tests.scoring.shardmaker import make_dataset

REPO = Path(__file__).resolve().parents[2]


def _fake_scores(out: Path, shards: dict[int, list[tuple[str, float]]], model: str = "m:x") -> None:
    for s, rows in shards.items():
        t = pa.table({"key": [k for k, _ in rows], "score_single": pa.array([v for _, v in rows], pa.float32()),
                      "score_multi": pa.array([v / 2 for _, v in rows], pa.float32()), "model": [model] * len(rows)})
        write_scores(out, s, t, {"shard": s, "model": model})


def test_keep_count_rounds_half_up() -> None:
    assert [keep_count(10, 20), keep_count(7, 30), keep_count(5, 50), keep_count(3, 50), keep_count(1, 100)] == [
        2, 2, 3, 2, 1]


@pytest.mark.parametrize("top", [1, 20, 30, 50, 100])
def test_exact_fraction_with_many_ties(top: int) -> None:
    rng = np.random.default_rng(top)
    n = 20_000
    scores = rng.integers(0, 50, n).astype(np.float32) / 50  # only 50 distinct values: ties everywhere
    keys = [f"w{i}" for i in rng.permutation(n)]
    t = pa.table({"key": keys, "score": scores, "shard": pa.array(np.arange(n) % 7, pa.int32())})
    kept, thr = select_top(t, top)
    assert kept.num_rows == keep_count(n, top)
    # The reference: sort everything by (score desc, key asc) and take the head.
    order = sorted(range(n), key=lambda i: (-float(scores[i]), keys[i]))[: kept.num_rows]
    assert kept["key"].to_pylist() == [keys[i] for i in order]
    assert thr == pytest.approx(float(scores[order[-1]]))
    # Row order of the input does not matter.
    shuffled = t.take(pa.array(rng.permutation(n)))
    assert select_top(shuffled, top)[0]["key"].to_pylist() == kept["key"].to_pylist()


def test_filter_writes_selection_and_reshard(tmp_path: Path) -> None:
    out = tmp_path / "out"
    samples = make_dataset(out, n=20, per_shard=10)
    vals = {s.key: (i * 7 % 20) / 20 for i, s in enumerate(samples)}
    _fake_scores(out, {i: [(s.key, vals[s.key]) for s in samples[i * 10 : i * 10 + 10]] for i in (0, 1)})
    res = filter_scores(out, FilterConfig(top=30))
    assert res.path == out / "selections" / "top30.parquet" and (res.total, res.kept) == (20, 6)
    sel = pq.read_table(res.path)
    assert sel.column_names == ["key", "score", "shard"]
    assert sorted(sel["key"].to_pylist()) == sorted(sorted(vals, key=lambda k: -vals[k])[:6])
    info = json.loads((out / "selections" / "top30.json").read_text())
    assert info["kept"] == 6 and info["model"] == "m:x" and info["by"] == "single"
    by_multi = filter_scores(out, FilterConfig(top=50, by="multi"))
    assert by_multi.kept == 10 and by_multi.path.name == "top50.parquet"

    dest = tmp_path / "kept"
    totals = reshard(out, read_selection(out, "top30"), dest)
    assert totals["samples"] == 6
    names = []
    for tar in sorted((dest / "shards").glob("*.tar")):
        with tarfile.open(tar) as tf:
            names += tf.getnames()
    assert sorted(names) == sorted(f"{k}.{ext}" for k in sel["key"].to_pylist() for ext in ("jpg", "txt", "json"))
    import webdataset as wds

    got = {s["__key__"] for s in wds.WebDataset([str(p) for p in sorted((dest / "shards").glob("*.tar"))],
                                                 shardshuffle=False, empty_check=False)}
    assert got == set(sel["key"].to_pylist())
    assert sorted((dest / "shards").glob("*_stats.json"))


def test_bad_input(tmp_path: Path) -> None:
    for top in (0, 120, -5):
        with pytest.raises(BadInputError, match="between 1 and 100"):
            FilterConfig(top=top)
    out = tmp_path / "out"
    make_dataset(out, n=4)
    with pytest.raises(InputFileError, match="run skyscript score"):
        filter_scores(out, FilterConfig(top=20))
    with pytest.raises(InputFileError, match="dataset folder not found"):
        filter_scores(tmp_path / "nothing", FilterConfig(top=20))
    _fake_scores(out, {0: [("w1000", 0.1)]}, model="a")
    with pytest.raises(BadInputError, match="--by"):
        filter_scores(out, FilterConfig(top=20, by="both"))
    with pytest.raises(InputFileError, match="skyscript filter"):
        read_selection(out, "top20")


def test_cli_filter_one_line_errors_and_warns_about_unscored(tmp_path: Path) -> None:
    out = tmp_path / "out"
    samples = make_dataset(out, n=20, per_shard=10)
    _fake_scores(out, {0: [(s.key, 0.5) for s in samples[:10]]})
    r = CliRunner().invoke(app, ["filter", str(out), "--top", "120"])
    assert r.exit_code == 2 and "between 1 and 100" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["filter", str(out), "--top", "20"])
    assert r.exit_code == 0, r.output
    assert "kept 2 of 10" in r.output and "1 finished shard(s) have no scores" in r.output


def test_filter_cli_does_not_import_torch(tmp_path: Path) -> None:
    out = tmp_path / "out"
    samples = make_dataset(out, n=6)
    _fake_scores(out, {0: [(s.key, 0.5) for s in samples]})
    code = (
        "import sys; from pipeline.cli import app\n"
        "try:\n    app(['filter', sys.argv[1], '--top', '50'])\nexcept SystemExit as e:\n    assert not e.code, e\n"
        "bad=[m for m in ('torch','open_clip','webdataset','PIL') if m in sys.modules]; assert not bad, bad"
    )
    r = subprocess.run([sys.executable, "-c", code, str(out)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (out / "selections" / "top50.parquet").is_file()
