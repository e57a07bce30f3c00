"""SkyCLIP trainer + evaluation on a tiny random open_clip model (CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from pipeline.errors import BadInputError, InputFileError, OutputConflictError
from storage.scores import write_scores
from storage.selection import FilterConfig, filter_scores
from storage.split import SplitConfig, make_split
from tests.scoring.shardmaker import Sample, make_dataset, write_shard
from training.evaluate.retrieval import RetrievalConfig, evaluate_retrieval, recall_at_k
from training.evaluate.zeroshot import ZeroShotConfig, evaluate_zeroshot, readable
from training.skyclip.train import SkyClipConfig, train_skyclip


def _scored(out: Path, samples: list[Sample], per_shard: int) -> None:
    for shard in range(0, len(samples), per_shard):
        ss = samples[shard : shard + per_shard]
        t = pa.table({"key": [s.key for s in ss], "score_single": pa.array(np.linspace(0, 1, len(ss)), pa.float32()),
                      "score_multi": pa.array([0.1] * len(ss), pa.float32()), "model": ["m"] * len(ss)})
        write_scores(out, shard // per_shard, t, {"shard": shard // per_shard, "model": "m"})


def _cfg(data: Path, out: Path, ckpt: Path, **kw: object) -> SkyClipConfig:
    base: dict = {"data": str(data), "out": str(out), "selection": "top100", "model": "tiny-score-test",
                  "pretrained": str(ckpt), "epochs": 3, "batch_size": 8, "lr": 2e-3, "warmup": 2, "device": "cpu",
                  "workers": 0, "log_every": 100}
    base.update(kw)
    return SkyClipConfig(**base)


def test_train_lowers_loss_saves_loadable_checkpoint_and_resumes(tiny_ckpt: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    samples = make_dataset(data, n=48, per_shard=16, spread=0.3)
    _scored(data, samples, 16)
    filter_scores(data, FilterConfig(top=100))
    make_split(data, SplitConfig(test_frac=0.2, block_deg=0.05))
    out = tmp_path / "run"
    res = train_skyclip(_cfg(data, out, tiny_ckpt, epochs=4))
    losses = [e["mean_loss"] for e in res["epochs"]]
    assert len(losses) == 4 and losses[-1] < losses[0] * 0.9, losses
    held = res["data"]["held_out"]
    assert held > 0 and res["data"]["usable"] == 48 - held  # test and buffer samples never trained on
    ckpt = Path(res["checkpoints"][-1])
    assert ckpt.name == "epoch_4.pt" and json.loads(ckpt.with_suffix(".json").read_text())["model"] == "tiny-score-test"
    state = torch.load(ckpt, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    import open_clip

    model, _, _ = open_clip.create_model_and_transforms("tiny-score-test", pretrained=str(ckpt))
    assert torch.equal(model.state_dict()["logit_scale"], state["logit_scale"])
    steps = [json.loads(line) for line in (out / "losses.jsonl").read_text().splitlines()]
    assert len(steps) == 4 * res["steps_per_epoch"]

    # Retrieval on the held-out split: the architecture comes from the checkpoint's sidecar.
    trained = evaluate_retrieval(RetrievalConfig(data=str(data), checkpoint=str(ckpt), device="cpu", workers=0))
    base = evaluate_retrieval(RetrievalConfig(data=str(data), checkpoint=str(tiny_ckpt), device="cpu", workers=0))
    assert trained["samples"] == base["samples"] > 0 and 0 <= trained["mean_recall"] <= 1
    assert trained["image_to_text_R@10"] >= trained["image_to_text_R@1"]

    # A second run into the same folder is refused; --resume continues after the last epoch.
    with pytest.raises(OutputConflictError, match="--resume"):
        train_skyclip(_cfg(data, out, tiny_ckpt, epochs=5))
    more = train_skyclip(_cfg(data, out, tiny_ckpt, epochs=5, resume=True))
    assert [e["epoch"] for e in more["epochs"]] == [5] and more["checkpoints"][-1].endswith("epoch_5.pt")
    assert more["epochs"][0]["mean_loss"] < losses[0]


def test_recall_at_k_by_hand() -> None:
    sim = np.array([[0.9, 0.1, 0.0], [0.8, 0.5, 0.1], [0.0, 0.2, 0.7]])
    r = recall_at_k(sim, ks=(1, 2))
    assert r["image_to_text_R@1"] == pytest.approx(2 / 3)  # row 1 ranks its match second
    assert r["text_to_image_R@1"] == pytest.approx(1.0)
    assert r["image_to_text_R@2"] == 1.0


def test_zeroshot_on_a_folder_per_class(tiny_ckpt: Path, tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, colour in (("AnnualCrop", (30, 160, 40)), ("sea_lake", (30, 60, 200)), ("Industrial", (150, 150, 150))):
        (tmp_path / "ds" / cls).mkdir(parents=True)
        for i in range(4):
            px = np.clip(np.array(colour) + rng.integers(-20, 20, (40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(px).save(tmp_path / "ds" / cls / f"{i}.png")
    res = evaluate_zeroshot(ZeroShotConfig(checkpoint=str(tiny_ckpt), dataset=str(tmp_path / "ds"), device="cpu",
                                           workers=0))
    assert res["images"] == 12 and res["classes"] == 3 and 0 <= res["top1"] <= 1
    assert set(res["per_class_top1"]) == {"annual crop", "sea lake", "industrial"}
    assert readable("baseball-diamond") == "baseball diamond"
    with pytest.raises(InputFileError, match="EuroSAT not found"):
        evaluate_zeroshot(ZeroShotConfig(checkpoint=str(tiny_ckpt), dataset="EuroSAT", root=str(tmp_path / "no")))
    with pytest.raises(BadInputError, match="not a folder"):
        evaluate_zeroshot(ZeroShotConfig(checkpoint=str(tiny_ckpt), dataset="ImageNet"))


def test_bad_input(tiny_ckpt: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    samples = make_dataset(data, n=8, per_shard=8)
    with pytest.raises(InputFileError, match="skyscript filter"):
        train_skyclip(_cfg(data, tmp_path / "r", tiny_ckpt))
    _scored(data, samples, 8)
    filter_scores(data, FilterConfig(top=100))
    with pytest.raises(BadInputError, match="fewer than --batch-size"):
        train_skyclip(_cfg(data, tmp_path / "r", tiny_ckpt, batch_size=64))
    with pytest.raises(BadInputError, match="--caption"):
        train_skyclip(_cfg(data, tmp_path / "r", tiny_ckpt, caption="both"))
    with pytest.raises(BadInputError, match="no split"):
        evaluate_retrieval(RetrievalConfig(data=str(data), checkpoint=str(tiny_ckpt), device="cpu"))
    bare = tmp_path / "bare.pt"
    torch.save(torch.load(tiny_ckpt, weights_only=True), bare)  # no sidecar: architecture unknown
    with pytest.raises(BadInputError, match="--model"):
        evaluate_retrieval(RetrievalConfig(data=str(data), checkpoint=str(bare), split="all", device="cpu"))
    r = evaluate_retrieval(RetrievalConfig(data=str(data), checkpoint=str(bare), model="tiny-score-test", split="all",
                                           device="cpu", workers=0))
    assert r["samples"] == 8
    write_shard(data, 5, [Sample("w1", "x", "", 0.0, 0.0, b"junk")])
    with pytest.raises(BadInputError, match="names 1 key"):
        bad = pa.table({"key": ["w999999"], "score": pa.array([0.1], pa.float32()), "shard": pa.array([0], pa.int32())})
        import pyarrow.parquet as pq

        pq.write_table(bad, tmp_path / "sel.parquet")
        train_skyclip(_cfg(data, tmp_path / "r2", tiny_ckpt, selection=str(tmp_path / "sel.parquet")))


def test_unreadable_training_image_gives_way_to_the_next(tmp_path: Path) -> None:
    import open_clip

    from training.samples import index_dataset
    from training.skyclip.data import PairDataset, RandomRot90

    data = tmp_path / "data"
    samples = make_dataset(data, n=4, per_shard=4)
    samples[1].jpg = b"\xff\xd8 truncated"
    write_shard(data, 0, samples)
    refs, _ = index_dataset(data)
    tok = open_clip.get_tokenizer("ViT-B-32")
    ds = PairDataset(refs, "single", lambda im: torch.zeros(3, 8, 8) + im.size[0], tok, rotate=False)
    _img, text = ds[1]
    assert ds.bad == {samples[1].key: 1} and torch.equal(text, tok([samples[2].caption_single])[0])
    from PIL import Image

    im = Image.new("RGB", (4, 2))
    sizes = {RandomRot90()(im).size for _ in range(40)}
    assert sizes == {(4, 2), (2, 4)}


def test_zeroshot_through_torchgeo_ucmerced_layout(tiny_ckpt: Path, tmp_path: Path) -> None:
    """The torchgeo path: a UC Merced folder laid out as torchgeo expects it after a download."""
    from PIL import Image

    rng = np.random.default_rng(1)
    root = tmp_path / "ucm"
    names = []
    for cls, colour in (("agricultural", (40, 150, 40)), ("beach", (220, 200, 150)), ("storagetanks", (200, 200, 200))):
        d = root / "UCMerced_LandUse" / "Images" / cls
        d.mkdir(parents=True)
        for i in range(3):
            name = f"{cls}{i:02d}.tif"
            px = np.clip(np.array(colour) + rng.integers(-20, 20, (64, 64, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(px).save(d / name)
            names.append(name)
    (root / "uc_merced-test.txt").write_text("\n".join(names[:-1]) + "\n")  # one image left out of the split
    res = evaluate_zeroshot(ZeroShotConfig(checkpoint=str(tiny_ckpt), dataset="UCMerced", root=str(root),
                                           device="cpu", workers=0))
    assert res["images"] == 8 and res["classes"] == 3 and 0 <= res["top1"] <= 1
    assert set(res["per_class_top1"]) == {"agricultural", "beach", "storagetanks"}
