"""Scorer throughput (image-caption pairs/s): ``skyscript score`` against a plain loop, same shards, same run.

Shards are written to the output contract from real OpenAerialMap chips (256x256 crops of the
mosaics in ``../shared/data/imagery/oam``; synthetic textures when absent), captioned the way
SkyScript's are (a few distinct captions, many repeats). Two ways to score them:

- ``plain``: what clip-retrieval's inference loop does — read samples in order (webdataset),
  PIL-decode and preprocess in the main process, encode images and captions batch by batch;
- ``skyscript score``: ``training.scoring.score_dataset`` — worker processes decode/preprocess
  while the model encodes, captions deduplicated per batch, results published per shard.

Both use the same model and batch size; the scores agree (checked). Default model: a small
random-init ViT (``bench-small``: 128 px, width 256, 4 layers), where decoding matters as it does
for ViT-L/14 on a GPU; ``--model ViT-L-14 --pretrained none --device cuda`` measures the real
thing on an accelerator (utilisation is reported from ``torch.cuda`` when on a GPU).

    .venv/bin/python bench/bench_score.py [--pairs N] [--workers N] [--batch-size N] [--model M]
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

OAM = ROOT.parent / "shared" / "data" / "imagery" / "oam"
SMALL = {
    "embed_dim": 256,
    "vision_cfg": {"image_size": 128, "layers": 4, "width": 256, "head_width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 256, "heads": 4, "layers": 4},
}
CAPTIONS = ["building", "residential building", "building, surrounded by building", "roof", "house", "shed"]


def chips(n: int, size: int = 256) -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(0)
    tiles: list[np.ndarray] = []
    tifs = sorted(OAM.glob("*_z21.tif")) if OAM.is_dir() else []
    if tifs:
        import rasterio

        for tif in tifs:
            with rasterio.open(tif) as src:
                arr = src.read([1, 2, 3]).transpose(1, 2, 0)
            for y in range(0, arr.shape[0] - size, size):
                for x in range(0, arr.shape[1] - size, size):
                    tiles.append(arr[y : y + size, x : x + size])
    out = []
    for i in range(n):
        px = tiles[i % len(tiles)] if tiles else rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        if tiles and i >= len(tiles):
            px = np.rot90(px, k=1 + (i // len(tiles)) % 3).copy()
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(px), "RGB").save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def make_shards(out: Path, n: int, per_shard: int) -> None:
    from tests.scoring.shardmaker import Sample, write_shard

    jpgs = chips(n)
    samples = [Sample(f"w{i}", CAPTIONS[i % len(CAPTIONS)], "", 0.0, 0.0, jpgs[i]) for i in range(n)]
    for s in range(0, n, per_shard):
        write_shard(out, s // per_shard, samples[s : s + per_shard])


def plain_loop(out: Path, bundle, batch_size: int) -> tuple[float, dict[str, float]]:
    """clip-retrieval style: decode + preprocess + encode, batch by batch, in one process."""
    import torch
    import torch.nn.functional as F
    import webdataset as wds
    from PIL import Image

    tars = sorted(str(p) for p in (out / "shards").glob("*.tar"))
    model, dev = bundle.model, bundle.device
    scores: dict[str, float] = {}
    t0 = time.perf_counter()
    batch: list = []

    def flush() -> None:
        imgs = torch.stack([bundle.preprocess_val(Image.open(io.BytesIO(s["jpg"])).convert("RGB")) for s in batch])
        toks = bundle.tokenizer([s["txt"].decode() for s in batch])
        with torch.no_grad():
            a = F.normalize(model.encode_image(imgs.to(dev)).float(), dim=-1)
            b = F.normalize(model.encode_text(toks.to(dev)).float(), dim=-1)
        for s, v in zip(batch, (a * b).sum(-1).cpu().tolist(), strict=True):
            scores[s["__key__"]] = v
        batch.clear()

    for sample in wds.WebDataset(tars, shardshuffle=False):
        batch.append(sample)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, scores


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=512)
    ap.add_argument("--per-shard", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--model", default="bench-small")
    ap.add_argument("--pretrained", default="none")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import open_clip
    import pyarrow.parquet as pq
    import torch

    from training.clip_models import load_clip
    from training.scoring import ScoreConfig, score_dataset

    tmp = Path(tempfile.mkdtemp(prefix="bench_score_"))
    try:
        (tmp / "cfg").mkdir()
        (tmp / "cfg" / "bench-small.json").write_text(json.dumps(SMALL))
        open_clip.add_model_config(tmp / "cfg")
        out = tmp / "out"
        make_shards(out, args.pairs, args.per_shard)
        torch.manual_seed(0)
        bundle = load_clip(args.model, args.pretrained, args.device)
        bundle.model.eval()
        with torch.no_grad():  # warm-up (allocator, kernels) so neither path pays it
            size = bundle.model.visual.image_size
            size = size if isinstance(size, int) else size[0]
            bundle.model.encode_image(torch.zeros(args.batch_size, 3, size, size, device=bundle.device))
        t_plain, ref = plain_loop(out, bundle, args.batch_size)
        if bundle.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        # In-process first (workers 0: isolates caption dedup + batching), then with workers.
        cfg0 = ScoreConfig(
            model=args.model,
            pretrained=args.pretrained,
            device=args.device,
            batch_size=args.batch_size,
            workers=0,
            overwrite=True,
        )
        t0 = time.perf_counter()
        score_dataset(out, cfg0, bundle=bundle, progress=False)
        t_inproc = time.perf_counter() - t0
        cfg = ScoreConfig(
            model=args.model,
            pretrained=args.pretrained,
            device=args.device,
            batch_size=args.batch_size,
            workers=args.workers,
            overwrite=True,
        )
        t0 = time.perf_counter()
        summary = score_dataset(out, cfg, bundle=bundle, progress=False)
        t_ours = time.perf_counter() - t0
        got = {}
        for p in sorted((out / "scores").glob("*.parquet")):
            t = pq.read_table(p).to_pydict()
            got.update(zip(t["key"], t["score_single"], strict=True))
        err = max(abs(got[k] - v) for k, v in ref.items())
        res = {
            "pairs": args.pairs,
            "model": args.model,
            "device": str(bundle.device),
            "batch_size": args.batch_size,
            "workers": args.workers,
            "real_chips": OAM.is_dir(),
            "plain_pairs_per_s": args.pairs / t_plain,
            "score_pairs_per_s": summary.pairs / t_ours,
            "score_workers0_pairs_per_s": args.pairs / t_inproc,
            "speedup": t_plain / t_ours,
            "model_busy": summary.model_busy,
            "max_abs_score_diff": err,
        }
        if bundle.device.type == "cuda":
            res["gpu_peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        print(f"model {args.model} on {bundle.device}, {args.pairs} pairs of 256 px JPEGs, batch {args.batch_size}")
        print(f"  plain loop (decode+preprocess+encode in one process): {res['plain_pairs_per_s']:8.1f} pairs/s")
        print(
            f"  skyscript score, --workers 0:                         {res['score_workers0_pairs_per_s']:8.1f} pairs/s"
        )
        print(
            f"  skyscript score, --workers {args.workers}:{' ' * 25}{res['score_pairs_per_s']:8.1f} pairs/s"
        )
        print(f"  ratio: {res['speedup']:.2f}x   (max |score difference| {err:.2e})")
        print(f"  model busy {summary.model_busy:.0%} of the scoring loop (rest: waiting for decoded batches)")
        if args.json:
            args.json.write_text(json.dumps(res, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
