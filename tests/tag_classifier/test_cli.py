"""``skyscript tags train|eval|predict`` end to end, and their one-line errors (exit 2, no traceback)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    r = runner.invoke(app, list(args))
    return r.exit_code, r.output


@pytest.fixture
def model_dir(tiny_clip: str, small_labels: Path, cache_path: Path, tmp_path: Path) -> Path:
    out = tmp_path / "model"
    code, text = _run(
        "tags", "train", "--embedder", tiny_clip, "--labels", str(small_labels), "--cache", str(cache_path),
        "--out", str(out), "--no-cv",
    )  # fmt: skip
    assert code == 0, text
    return out


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_train_eval_predict(model_dir: Path, small_labels: Path, cache_path: Path, tmp_path: Path) -> None:
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["embedder"].startswith("open_clip:tiny-tag-test") and len(meta["labels_sha256"]) == 64

    code, text = _run(
        "tags", "eval", str(model_dir), "--folds", "3", "--labels", str(small_labels), "--cache", str(cache_path)
    )
    assert code == 0, text
    assert "stage 1" in text and "within one class" in text and "key families held out" in text
    ev = json.loads((model_dir / "eval.json").read_text())
    assert ev["cv"]["folds"] == 3 and "cv_by_family" in ev

    tags = _write(
        tmp_path / "tags.csv",
        "tag,count\nbuilding=house,3\nname=Kauppatori,1\nname:zh=赫尔辛基,1\n建筑=房子,1\nzzz_key=some value,2\n",
    )
    out = tmp_path / "pred" / "predictions.csv"
    code, text = _run(
        "tags", "predict", str(model_dir), "--in", str(tags), "--out", str(out),
        "--labels", str(small_labels), "--cache", str(cache_path),
    )  # fmt: skip
    assert code == 0, text
    with out.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["tag", "groundable", "p_groundable", "max_gsd"]
    assert [r["tag"] for r in rows] == [
        "building=house",
        "name=Kauppatori",
        "name:zh=赫尔辛基",
        "建筑=房子",
        "zzz_key=some value",
    ]
    assert rows[0] == {"tag": "building=house", "groundable": "yes", "p_groundable": "1.0000", "max_gsd": "1"}
    assert rows[1]["groundable"] == "no" and rows[1]["p_groundable"] == "0.0000" and rows[1]["max_gsd"] == ""
    for r in rows[3:]:  # decided by the model
        p = float(r["p_groundable"])
        assert 0 <= p <= 1 and (r["groundable"] == "yes") == (p >= 0.5)
        assert (r["max_gsd"] == "") == (r["groundable"] == "no")


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("tag\nbuilding=yes\n\n", None),  # a blank line is skipped by csv, not an error
        ('tag\nbuilding=yes\n""\n', "row 3: empty tag"),
        ("tag\nbuilding=yes\nnoequals\n", "row 3: tag 'noequals' has no '='"),
        ("tag\n=value\n", "row 2: empty key"),
        ("tag\nkey=\n", "row 2: empty value"),
        ("tag\nnote=" + "x" * 5000 + "\n", "row 2: value is 5000 characters long"),
        ('tag\n" building=yes"\n', "row 2: key ' building' has leading/trailing whitespace"),
        ("name\nbuilding=yes\n", "no 'tag' column"),
        ("tag\n", "no rows"),
    ],
)
def test_predict_rejects_bad_input_naming_the_row(
    model_dir: Path, small_labels: Path, cache_path: Path, tmp_path: Path, body: str, match: str | None
) -> None:
    tags = _write(tmp_path / "bad.csv", body)
    code, text = _run(
        "tags", "predict", str(model_dir), "--in", str(tags), "--out", str(tmp_path / "o.csv"),
        "--labels", str(small_labels), "--cache", str(cache_path),
    )  # fmt: skip
    if match is None:
        assert code == 0, text
        return
    assert code == 2, text
    assert match in text and "bad.csv" in text and "Traceback" not in text
    assert not (tmp_path / "o.csv").exists()


def test_bad_label_files_and_missing_model(tmp_path: Path, model_dir: Path) -> None:
    dup = _write(tmp_path / "dup.csv", "tag,groundable,max_gsd,decided_by,note\na=b,yes,1,manual,\na=b,no,,manual,\n")
    code, text = _run("tags", "train", "--labels", str(dup), "--out", str(tmp_path / "m"))
    assert code == 2 and "dup.csv row 3" in text and "conflicting" in text and "Traceback" not in text
    code, text = _run("tags", "eval", str(tmp_path / "no_model"))
    assert code == 2 and "skyscript tags train" in text
    tags = _write(tmp_path / "t.csv", "tag\nbuilding=yes\n")
    code, text = _run("tags", "predict", str(model_dir), "--in", str(tmp_path / "missing.csv"), "--out", str(tags))
    assert code == 2 and "tags file not found" in text
    code, text = _run("tags", "train", "--embedder", "nonsense", "--out", str(tmp_path / "m"))
    assert code == 2 and "unknown embedder 'nonsense'" in text


def test_tags_help_lists_commands() -> None:
    code, text = _run("tags", "--help")
    assert code == 0
    for cmd in ("train", "eval", "predict"):
        assert cmd in text
