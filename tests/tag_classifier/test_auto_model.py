"""The build's default model: trained once on first need, cached per labels file, lazy, picklable."""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import pytest

from tag_classifier.auto_model import AutoModel, default_model_dir
from tag_classifier.labels import LABELS_PATH, load_labels
from tag_classifier.model import META_FILE
from tag_classifier.visibility import LabelVisibility


def _small_labels(tmp_path: Path) -> Path:
    """Every 8th row of the shipped labels (enough for 5 classes and both stage-1 classes)."""
    with open(LABELS_PATH, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    keep = rows[::8]
    path = tmp_path / "labels.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(keep)
    return path


def test_auto_model_is_lazy_then_trains_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYSCRIPT_CACHE", str(tmp_path / "cache"))
    labels = load_labels(_small_labels(tmp_path))
    auto = AutoModel(labels)
    assert auto.dir == default_model_dir(labels) and str(tmp_path / "cache") in str(auto.dir)
    vis = LabelVisibility(labels, model=auto)
    # Nothing is trained while only labelled (or no) tags are asked about.
    lab = labels.labels[0]
    key, _, value = lab.tag.partition("=")
    vis.visible_tags({key: "x" if value == "*" else value}, None)
    assert not (auto.dir / META_FILE).exists()
    assert auto.describe()["kind"] == "auto"
    # An unlabelled tag needs the model: it is trained and saved.
    out = auto.predict_pairs([("zzqx_unlabelled_key", "swimming pool"), ("zzqx_unlabelled_key", "phone number")])
    assert len(out) == 2 and all(isinstance(g, bool) for g, _p, _gsd in out)
    meta = auto.dir / META_FILE
    assert meta.is_file()
    stamp = meta.stat().st_mtime_ns
    # A second predictor (another worker) loads it instead of training again.
    again = pickle.loads(pickle.dumps(AutoModel(labels)))
    assert again._model is None
    g, p, gsd = again.predict_pairs([("zzqx_unlabelled_key", "swimming pool")])[0]
    assert (g, gsd) == (out[0][0], out[0][2]) and p == pytest.approx(out[0][1], abs=1e-4)
    assert meta.stat().st_mtime_ns == stamp
