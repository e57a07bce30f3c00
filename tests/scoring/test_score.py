"""skyscript score: equals open_clip's own cosine similarity; resumable; bad input."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.errors import BadInputError, InputFileError, OutputConflictError
from storage.scores import read_scores, score_paths
from tests.scoring.shardmaker import make_dataset, make_samples, write_shard
from training.scoring import ScoreConfig, score_dataset


def _cfg(ckpt: Path, **kw: object) -> ScoreConfig:
    return ScoreConfig(**{"model": "tiny-score-test", "pretrained": str(ckpt), "device": "cpu", "batch_size": 4,
                          "workers": 0, **kw})


def _reference(ckpt: Path, samples: list) -> dict[str, tuple[float, float]]:
    """Scores computed the plain way: PIL decode, open_clip preprocess, encode one by one."""
    import open_clip
    import torch
    from PIL import Image

    model, _, pre = open_clip.create_model_and_transforms("tiny-score-test", pretrained=str(ckpt))
    model.eval()
    tok = open_clip.get_tokenizer("tiny-score-test")
    ref = {}
    with torch.no_grad():
        for s in samples:
            img = model.encode_image(pre(Image.open(io.BytesIO(s.jpg)).convert("RGB"))[None])
            img = img / img.norm(dim=-1, keepdim=True)
            caps = [s.caption_single, s.caption_multi or "x"]
            txt = model.encode_text(tok(caps))
            txt = txt / txt.norm(dim=-1, keepdim=True)
            sim = (img @ txt.T)[0]
            ref[s.key] = (float(sim[0]), float(sim[1]) if s.caption_multi else float("nan"))
    return ref


@pytest.mark.parametrize("workers", [0, 2])
def test_scores_equal_open_clip_cosine(tiny_ckpt: Path, tmp_path: Path, workers: int) -> None:
    out = tmp_path / "out"
    samples = make_dataset(out, n=14, per_shard=6)
    summary = score_dataset(out, _cfg(tiny_ckpt, workers=workers, save_embeddings=True), progress=False)
    assert summary.shards_scored == 3 and summary.pairs == 14
    ref = _reference(tiny_ckpt, samples)
    got = {}
    for i in range(3):
        t = pq.read_table(score_paths(out, i)["parquet"]).to_pylist()
        assert {r["model"] for r in t} == {summary.model}
        got.update({r["key"]: (r["score_single"], r["score_multi"]) for r in t})
        marker = json.loads(score_paths(out, i)["stats"].read_text())
        assert marker["model"] == summary.model and marker["scored"] == len(t)
    assert set(got) == set(ref)
    for k, (s1, m1) in ref.items():
        assert got[k][0] == pytest.approx(s1, abs=1e-5)
        if np.isnan(m1):
            assert np.isnan(got[k][1])
        else:
            assert got[k][1] == pytest.approx(m1, abs=1e-5)
    emb = np.load(out / "embeddings" / "00000.npz")
    assert emb["image"].dtype == np.float16 and emb["image"].shape == (6, 32)
    assert np.allclose(np.linalg.norm(emb["image"].astype(np.float32), axis=1), 1, atol=1e-2)
    i0 = list(emb["key"]).index(samples[0].key)
    cos = float(emb["image"][i0].astype(np.float32) @ emb["text_single"][i0].astype(np.float32))
    assert cos == pytest.approx(ref[samples[0].key][0], abs=5e-3)


def test_resume_skips_scored_shards_and_refuses_another_model(tiny_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_dataset(out, n=12, per_shard=6)
    first = score_dataset(out, _cfg(tiny_ckpt), progress=False)
    assert first.shards_scored == 2
    mtime = score_paths(out, 0)["parquet"].stat().st_mtime_ns
    write_shard(out, 2, make_samples(3, seed=9))  # the build finished one more shard meanwhile
    again = score_dataset(out, _cfg(tiny_ckpt), progress=False)
    assert (again.shards_scored, again.shards_skipped, again.pairs) == (1, 2, 3)
    assert score_paths(out, 0)["parquet"].stat().st_mtime_ns == mtime
    with pytest.raises(OutputConflictError, match="--overwrite"):
        score_dataset(out, _cfg(tiny_ckpt, pretrained="none"), progress=False)
    table, info = read_scores(out)
    assert table.num_rows == 15 and info["unscored_shards"] == []


def test_corrupt_and_missing_rows_are_skipped_and_counted(tiny_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    samples = make_samples(5)
    samples[1].jpg = samples[1].jpg[: len(samples[1].jpg) // 3]  # truncated JPEG
    samples[2].jpg = b"not a jpeg at all"
    samples[3].caption_single = ""  # missing caption
    write_shard(out, 0, samples, failed=2)
    tar = out / "shards" / "00000.tar"  # drop one ok sample's image from the tar
    with tarfile.open(tar) as tf:
        members = [(m, tf.extractfile(m).read()) for m in tf.getmembers() if m.name != f"{samples[4].key}.jpg"]
    with tarfile.open(tar, "w") as tf:
        for m, data in members:
            tf.addfile(m, io.BytesIO(data))
    s = score_dataset(out, _cfg(tiny_ckpt, workers=1), progress=False)
    assert s.pairs == 1
    assert s.skipped_rows == {"corrupt_image": 2, "missing_caption": 1, "missing_image": 1}
    marker = json.loads(score_paths(out, 0)["stats"].read_text())
    assert marker["errors"] == {"corrupt_image": 2, "missing_caption": 1, "missing_image": 1}
    assert marker["skipped"] == 4 and marker["scored"] == 1


def test_bad_input(tiny_ckpt: Path, tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no finished shards"):
        score_dataset(tmp_path, _cfg(tiny_ckpt), progress=False)
    out = tmp_path / "out"
    make_dataset(out, n=3)
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(BadInputError, match="no CUDA device"):
            score_dataset(out, _cfg(tiny_ckpt, device="cuda"), progress=False)
    with pytest.raises(BadInputError, match="unknown open_clip model"):
        score_dataset(out, _cfg(tiny_ckpt, model="ViT-Nope"), progress=False)
    with pytest.raises(InputFileError, match="checkpoint not found"):
        score_dataset(out, _cfg(tiny_ckpt, pretrained=str(tmp_path / "nope.pt")), progress=False)
    other = tmp_path / "other.pt"
    import open_clip

    torch.save(open_clip.create_model("RN50", pretrained=None).state_dict(), other)  # another architecture
    with pytest.raises(BadInputError, match="does not fit model"):
        score_dataset(out, _cfg(other), progress=False)
    assert not (out / "scores").exists()  # nothing half-written


def test_member_names_survive(tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_dataset(out, n=2)
    with tarfile.open(out / "shards" / "00000.tar") as tf:
        assert sorted(tf.getnames()) == ["w1000.jpg", "w1000.json", "w1000.txt", "w1001.jpg", "w1001.json", "w1001.txt"]


def test_batch_size_probe_selection_logic() -> None:
    """The GPU batch-size pick (run here without a GPU: the probe is a stand-in for 'fits in memory')."""
    from training.scoring import largest_fitting_batch

    tried: list[int] = []

    def fits(b: int) -> bool:
        tried.append(b)
        return b <= 300

    assert largest_fitting_batch(fits, 1024) == 128 and tried == [1024, 512, 256]
    assert largest_fitting_batch(lambda b: True, 1024) == 512
    assert largest_fitting_batch(lambda b: False, 1024) == 8


def test_damaged_shard_is_a_clear_error_and_earlier_scores_stay(tiny_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_dataset(out, n=12, per_shard=6)
    score_dataset(out, _cfg(tiny_ckpt), progress=False)
    write_shard(out, 2, make_samples(3, seed=4))
    (out / "shards" / "00002.tar").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(InputFileError, match=r"00002\.tar is unreadable"):  # found in a worker, said in one line
        score_dataset(out, _cfg(tiny_ckpt, workers=1), progress=False)
    assert score_paths(out, 0)["stats"].is_file() and score_paths(out, 1)["stats"].is_file()
