"""Exports and splits: the SkyScript CSV layout read by open_clip and torchgeo; shards read by
webdataset, Hugging Face datasets and open_clip's webdataset loader; spatial-block test split."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import BadInputError
from storage.export import export_csv
from storage.scores import write_scores
from storage.selection import FilterConfig, filter_scores
from storage.split import SplitConfig, make_split
from tests.scoring.shardmaker import Sample, make_dataset


def _scored(out: Path, samples: list[Sample], model: str = "ViT-L-14:openai") -> None:
    by: dict[int, list[Sample]] = {}
    for i, s in enumerate(samples):
        by.setdefault(i // 10, []).append(s)
    for shard, ss in by.items():
        single = pa.array([int(s.key[1:]) / 1e4 for s in ss], pa.float32())
        t = pa.table({"key": [s.key for s in ss], "score_single": single,
                      "score_multi": pa.array([0.1] * len(ss), pa.float32()), "model": [model] * len(ss)})
        write_scores(out, shard, t, {"shard": shard, "model": model})


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, list[Sample]]:
    out = tmp_path / "out"
    samples = make_dataset(out, n=30, per_shard=10)
    _scored(out, samples)
    filter_scores(out, FilterConfig(top=30))
    return out, samples


def test_csv_export_layout_open_clip_and_torchgeo(dataset: tuple[Path, list[Sample]], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    out, samples = dataset
    dest = tmp_path / "export"
    res = export_csv(out, "top30", dest)
    path, n = res["train"]
    assert path.name == "SkyScript_train_top30pct_filtered_by_CLIP_openai.csv" and n == 9
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == ["filepath", "title", "title_multi_objects", "similarity_CLIP_openai"]
    by_key = {s.key: s for s in samples}
    for r in rows:
        key = Path(r["filepath"]).stem
        assert (dest / r["filepath"]).read_bytes() == by_key[key].jpg  # bytes copied unchanged
        assert r["title"] == by_key[key].caption_single
        assert r["title_multi_objects"] == (by_key[key].caption_multi or by_key[key].caption_single)
    # torchgeo's SkyScript dataset class reads it as released.
    from torchgeo.datasets import SkyScript

    ds = SkyScript(root=str(dest), split="train")
    assert len(ds) == 9 and ds[0]["image"].shape == (3, 48, 48) and ds[0]["caption"] == rows[0]["title"]
    # open_clip's CSV loader, run from the export folder (paths are relative to it).
    from open_clip_train.data import get_csv_dataset

    monkeypatch.chdir(dest)
    args = argparse.Namespace(train_data=path.name, csv_img_key="filepath", csv_caption_key="title",
                              csv_separator=",", batch_size=3, workers=0, distributed=False)
    info = get_csv_dataset(args, lambda im: __import__("torchvision").transforms.functional.pil_to_tensor(im),
                           is_train=True, tokenizer=lambda t: t)
    images, texts = next(iter(info.dataloader))
    assert images.shape == (3, 3, 48, 48) and len(texts) == 3


def test_export_refuses_selection_of_unknown_keys(dataset: tuple[Path, list[Sample]], tmp_path: Path) -> None:
    out, _ = dataset
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"key": ["w1", "w1000"], "score": pa.array([0.1, 0.2], pa.float32()),
                             "shard": pa.array([0, 0], pa.int32())}), bad)
    with pytest.raises(BadInputError, match="names 1 key"):
        export_csv(out, str(bad), tmp_path / "e")


def test_shards_read_by_webdataset_hf_datasets_and_open_clip(dataset: tuple[Path, list[Sample]],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    out, samples = dataset
    tars = sorted(str(p) for p in (out / "shards").glob("*.tar"))
    import webdataset as wds

    assert sum(1 for _ in wds.WebDataset(tars, shardshuffle=False)) == len(samples)
    from datasets import load_dataset

    hf = load_dataset("webdataset", data_files={"train": tars}, split="train")
    assert len(hf) == len(samples) and hf[0]["txt"] == samples[0].caption_single
    assert hf[0]["jpg"].size == (48, 48) and hf[0]["json"]["key"] == samples[0].key
    import functools

    import open_clip_train.data as ocd
    import torchvision.transforms as T
    from open_clip_train.data import get_wds_dataset

    # open_clip 3.3's reader predates webdataset >= 0.2.96's end-of-shard marker ({}): the known
    # incompatibility (webdataset#384, open_clip#935) hits every tar, not ours in particular; the
    # documented fix is eof_value=None.
    monkeypatch.setattr(ocd, "tar_file_expander", functools.partial(ocd.tar_file_expander, eof_value=None))

    args = argparse.Namespace(
        train_data="::".join(tars), train_data_upsampling_factors=None, train_num_samples=len(samples),
        dataset_resampled=False, seed=0, batch_size=5, workers=1, world_size=1, distributed=False)
    info = get_wds_dataset(args, T.Compose([T.Resize(32), T.ToTensor()]), is_train=True, tokenizer=lambda t: [0])
    images, _ = next(iter(info.dataloader))
    assert images.shape == (5, 3, 32, 32)


def test_spatial_block_split(tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_dataset(out, n=400, per_shard=100, spread=0.5)
    res = make_split(out, SplitConfig(test_frac=0.1, block_deg=0.05, seed=1))
    t = pq.read_table(out / "split.parquet").to_pandas()
    assert res["test"] == (t["split"] == "test").sum() and 30 <= res["test"] <= 80
    test_blocks = set(t.loc[t.split == "test", "block"])
    assert not test_blocks & set(t.loc[t.split != "test", "block"])  # whole blocks only
    rows = pq.read_table(out / "shards" / "00000.parquet").to_pandas()
    # No training chip overlaps a test chip's ground (the buffer takes the near ones).
    allrows = pq.read_table(sorted((out / "shards").glob("*.parquet"))).to_pandas().merge(t, on="key")
    tr, te = allrows[allrows.split == "train"], allrows[allrows.split == "test"]
    for _, a in te.iterrows():
        b = tr.bbox.tolist()
        assert not any(x[0] < a.bbox[2] and a.bbox[0] < x[2] and x[1] < a.bbox[3] and a.bbox[1] < x[3] for x in b)
    assert len(rows)
    again = make_split(out, SplitConfig(test_frac=0.1, block_deg=0.05, seed=1))
    assert again == res and pq.read_table(out / "split.parquet").to_pandas().equals(t)
    make_split(out, SplitConfig(test_frac=0.1, block_deg=0.05, seed=2))
    assert pq.read_table(out / "split.parquet").to_pandas()["split"].tolist() != t["split"].tolist()
    with pytest.raises(BadInputError, match="--test-frac"):
        SplitConfig(test_frac=1.5)


def test_export_with_split_writes_train_and_test(dataset: tuple[Path, list[Sample]], tmp_path: Path) -> None:
    out, _ = dataset
    make_split(out, SplitConfig(test_frac=0.3, block_deg=0.05, seed=0))
    res = export_csv(out, "top30", tmp_path / "e")
    assert "test" in res and sum(n for _, n in res.values()) <= 9
