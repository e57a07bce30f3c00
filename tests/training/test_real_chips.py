"""A tiny SkyCLIP run on real chips (OAM orthophotos of the sample areas), from a real build.

The areas' captions are all "building", which no contrastive loss can learn from; the test gives
each real chip a distinct caption (the trainer reads captions from the shard tables), so falling
loss means the model learnt to tell these chips apart.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipeline.build import BuildInputs, build
from pipeline.config import load_config
from storage.selection import FilterConfig, filter_scores
from training.evaluate.retrieval import RetrievalConfig, evaluate_retrieval
from training.scoring import ScoreConfig, score_dataset
from training.skyclip.train import SkyClipConfig, train_skyclip

WORDS_A = ["red", "blue", "green", "white", "black", "grey", "brown", "pink"]
WORDS_B = ["roof", "house", "shed", "school", "church", "store", "garage", "hall"]


def _distinct_captions(out: Path) -> int:
    n = 0
    for p in sorted((out / "shards").glob("*.parquet")):
        t = pq.read_table(p)
        caps = [f"{WORDS_A[(n + i) % 8]} {WORDS_B[((n + i) // 8) % 8]}" for i in range(t.num_rows)]
        ok = pc.equal(t["status"], "ok")
        single = pc.if_else(ok, pa.array(caps), t["caption_single"])
        t = t.set_column(t.schema.get_field_index("caption_single"), "caption_single", single)
        pq.write_table(t, p)
        n += t.num_rows
    return n


@pytest.mark.shared_data
@pytest.mark.slow
def test_training_on_real_chips_lowers_loss(shared_data: Path, tiny_ckpt: Path, tmp_path: Path) -> None:
    oam = shared_data / "imagery" / "oam"
    out = tmp_path / "area2"
    cfg = load_config(max_objects=40)
    cfg = cfg.replace(caption=dataclasses.replace(cfg.caption, unknown_tags="drop"))
    build(BuildInputs(osm=str(oam / "area2_buildings.osm"), imagery=f"local:{oam}", out=str(out)), cfg,
          log=lambda _m: None)
    _distinct_captions(out)
    scored = score_dataset(out, ScoreConfig(model="tiny-score-test", pretrained=str(tiny_ckpt), device="cpu",
                                            workers=0, batch_size=16), progress=False)
    assert scored.pairs >= 16
    filter_scores(out, FilterConfig(top=100))
    res = train_skyclip(SkyClipConfig(data=str(out), out=str(tmp_path / "run"), selection="top100",
                                      model="tiny-score-test", pretrained=str(tiny_ckpt), epochs=6, batch_size=8,
                                      lr=2e-3, warmup=2, device="cpu", workers=0))
    losses = [e["mean_loss"] for e in res["epochs"]]
    assert losses[-1] < losses[0] * 0.9, losses
    ckpt = res["checkpoints"][-1]
    after = evaluate_retrieval(RetrievalConfig(data=str(out), checkpoint=ckpt, split="all", device="cpu", workers=0))
    before = evaluate_retrieval(RetrievalConfig(data=str(out), checkpoint=str(tiny_ckpt), split="all", device="cpu",
                                                workers=0))
    assert after["samples"] == before["samples"] == scored.pairs
    assert after["mean_recall"] > before["mean_recall"], (before, after)
    print(f"real chips: {scored.pairs} pairs, loss per epoch {[round(v, 3) for v in losses]}, mean recall "
          f"{before['mean_recall']:.3f} -> {after['mean_recall']:.3f}")
