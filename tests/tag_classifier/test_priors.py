"""Per-key priors: leave-one-out, training rows only (outer and inner CV), saved with the model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import InputFileError
from tag_classifier import model as M
from tag_classifier.auto_model import default_model_dir
from tag_classifier.labels import load_labels
from tag_classifier.model import META_FILE, cross_validate, featurize, load_model, seen_rows, train, training_set
from tag_classifier.priors import FEATURE_NAMES, N_FEATURES, KeyPriors


def _rows(small_labels: Path) -> tuple[list[tuple[str, str]], np.ndarray, np.ndarray]:
    ts = training_set(load_labels(small_labels))
    return ts.pairs, ts.groundable, ts.gsd_class


def test_leave_one_out_equals_the_table_without_the_row(small_labels: Path) -> None:
    """A training row's prior is exactly what a table built without that row would say."""
    pairs, g, c = _rows(small_labels)
    table = KeyPriors.from_rows(pairs, g, c, smoothing=3.0)
    loo = table.features(pairs, g, c)
    assert loo.shape == (len(pairs), N_FEATURES) == (len(pairs), len(FEATURE_NAMES))
    for i in range(len(pairs)):
        keep = [j for j in range(len(pairs)) if j != i]
        without = KeyPriors.from_rows([pairs[j] for j in keep], g[keep], c[keep], smoothing=3.0)
        np.testing.assert_allclose(loo[i], without.features([pairs[i]])[0], rtol=1e-6, atol=1e-6)


def test_own_label_cannot_move_its_prior(small_labels: Path) -> None:
    pairs, g, c = _rows(small_labels)
    i = pairs.index(("building", "shed"))
    flipped = g.copy()
    flipped[i] = False
    c2 = c.copy()
    c2[i] = -1
    a = KeyPriors.from_rows(pairs, g, c, 3.0).features([pairs[i]], g[[i]], c[[i]])
    b = KeyPriors.from_rows(pairs, flipped, c2, 3.0).features([pairs[i]], flipped[[i]], c2[[i]])
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_unseen_keys_smoothing_and_prefix_lookup(small_labels: Path) -> None:
    pairs, g, c = _rows(small_labels)
    t = KeyPriors.from_rows(pairs, g, c, 3.0)
    new, building, addr = t.features([("zzz_new", "x"), ("building", "garage"), ("addr:street", "Main")])
    assert new[1] == 1 and new[3] == 1 and new[5] == 1 and new[7] == 1  # unseen key and family
    assert building[1] == 0 and building[0] > 0.5  # building rows are all groundable
    assert addr[1] == 0 and addr[0] < new[0]  # addr:street goes through the addr:* row (not groundable)
    # a singleton key reads as unseen when its own row is taken out
    i = pairs.index(("ref", "*"))
    assert t.features([pairs[i]], g[[i]], c[[i]])[0, 1] == 1


def test_cv_priors_never_see_the_test_or_validation_rows(
    tiny_clip: str, small_labels: Path, cache_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every prior table is counted from training rows; rows it scores without labels are not in it."""
    made = KeyPriors.from_rows.__func__  # type: ignore[attr-defined]
    calls = {"unseen": 0, "loo": 0}

    def from_rows(cls, pairs, groundable, gsd_class, smoothing):  # type: ignore[no-untyped-def]
        t = made(cls, pairs, groundable, gsd_class, smoothing)
        t._rows = set(pairs)
        return t

    features = KeyPriors.features

    def checked(self, pairs, groundable=None, gsd_class=None):  # type: ignore[no-untyped-def]
        rows = getattr(self, "_rows", None)
        if rows is not None:
            if groundable is None:
                assert not set(pairs) & rows, "a held-out row's label is in its own prior table"
                calls["unseen"] += 1
            else:
                assert set(pairs) <= rows
                calls["loo"] += 1
        return features(self, pairs, groundable, gsd_class)

    monkeypatch.setattr(KeyPriors, "from_rows", classmethod(from_rows))
    monkeypatch.setattr(KeyPriors, "features", checked)
    r = cross_validate(load_labels(small_labels), tiny_clip, folds=3, cache_path=cache_path, variant="emb+prior")
    assert r["variant"] == "emb+prior" and r["stage1"]["n"] == 27
    assert calls["unseen"] >= 3 and calls["loo"] >= 3  # outer test folds, inner validation folds, fits


@pytest.mark.parametrize("variant", ["emb+prior", "emb+prior+value", "emb+value"])
def test_variant_saves_reloads_and_predicts_identically(
    variant: str, tiny_clip: str, small_labels: Path, cache_path: Path, tmp_path: Path
) -> None:
    labels = load_labels(small_labels)
    m = train(labels, tiny_clip, cache_path, variant=variant)
    d = m.save(tmp_path / "model")
    meta = json.loads((d / META_FILE).read_text())
    assert meta["variant"] == variant and meta["format_version"] == M.FORMAT_VERSION
    assert (meta["priors"] is not None) == ("prior" in variant)
    assert ("embed('value')" in meta["features"]) == ("value" in variant)
    back = load_model(d, labels=labels, cache_path=cache_path)
    assert back.variant == variant
    pairs = [("building", "garage"), ("zzz", "unknown thing"), ("name:fi", "Helsinki"), ("addr:city", "Espoo")]
    assert back.predict_pairs(pairs) == m.predict_pairs(pairs)
    if "prior" in variant:
        # never-seen keys (and families) go to the stages without priors, seen ones to the prior-fed stages
        assert back.base1 is not None and back.base1.prior_weight == 0 and back.stage1.prior_weight > 0
        assert back.stage2.prior_weight == 0  # stage 2 reads no priors
        assert (back.stage1.input_dims > 0) == ("value" in variant)  # the prior stage never reads embed(value)
        X = featurize(back.embedder, pairs, value="value" in variant)
        P = back.prior_features(pairs)
        assert P is not None and seen_rows(P).tolist() == [True, False, True, True]
        p_base = back.base1.proba(X[[1]])[0, list(back.base1.classes).index(True)]
        assert back.predict_pairs(pairs)[1][1] == pytest.approx(p_base, abs=1e-6)
    else:
        assert back.base1 is None and back.priors is None


def test_old_format_and_bad_variant_are_refused_clearly(
    tiny_clip: str, small_labels: Path, cache_path: Path, tmp_path: Path
) -> None:
    d = train(load_labels(small_labels), tiny_clip, cache_path).save(tmp_path / "m")
    meta = json.loads((d / META_FILE).read_text())
    (d / META_FILE).write_text(json.dumps({**meta, "format_version": 2}))
    with pytest.raises(InputFileError, match=r"format_version 2.*retrain"):
        load_model(d)
    (d / META_FILE).write_text(json.dumps({**meta, "variant": "bogus"}))
    with pytest.raises(InputFileError, match=r"unknown feature variant.*retrain"):
        load_model(d)


def test_default_model_dir_names_the_format_version(small_labels: Path) -> None:
    assert f"-v{M.FORMAT_VERSION}-" in default_model_dir(load_labels(small_labels)).name
