"""Tiny build outputs for scoring/training tests, written to the output contract directly.

``make_dataset`` writes ``OUT/shards/NNNNN.{tar,parquet}`` + ``NNNNN_stats.json`` with synthetic
chips (a seeded coloured square per caption class, so captions and pixels agree), plus the tiny
random open_clip model and a saved checkpoint used by every scoring and training test.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

TINY = "tiny-score-test"
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
CLASSES = {
    "building": (200, 60, 60),
    "swimming pool": (40, 120, 230),
    "forest": (30, 150, 40),
    "parking lot": (128, 128, 128),
}


@dataclass
class Sample:
    key: str
    caption_single: str
    caption_multi: str
    lon: float
    lat: float
    jpg: bytes


def register_tiny(cfg_dir: Path) -> str:
    import open_clip

    cfg_dir.mkdir(parents=True, exist_ok=True)
    (cfg_dir / f"{TINY}.json").write_text(json.dumps(TINY_CFG), encoding="utf-8")
    open_clip.add_model_config(cfg_dir)
    return TINY


def save_tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    """Random weights of the tiny model as a plain state dict (+ sidecar naming the architecture)."""
    import open_clip
    import torch

    torch.manual_seed(seed)
    model = open_clip.create_model(TINY, pretrained=None)
    torch.save(model.state_dict(), path)
    path.with_suffix(".json").write_text(json.dumps({"model": TINY}), encoding="utf-8")
    return path


def chip(caption: str, rng: np.random.Generator, size: int = 48) -> bytes:
    base = np.array(CLASSES.get(caption, (90, 90, 20)), dtype=np.int16)
    px = np.clip(base + rng.integers(-25, 25, size=(size, size, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(px, "RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_samples(n: int, seed: int = 0, lon0: float = 32.58, lat0: float = 0.32, spread: float = 0.2) -> list[Sample]:
    rng = np.random.default_rng(seed)
    names = list(CLASSES)
    out = []
    for i in range(n):
        cap = names[i % len(names)]
        other = names[(i + 1) % len(names)]
        out.append(
            Sample(
                key=f"w{1000 + i}",
                caption_single=cap,
                caption_multi=f"{cap}, surrounded by {other}" if i % 5 else "",
                lon=lon0 + float(rng.uniform(0, spread)),
                lat=lat0 + float(rng.uniform(0, spread)),
                jpg=chip(cap, rng),
            )
        )
    return out


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def write_shard(out: Path, index: int, samples: list[Sample], failed: int = 0) -> None:
    d = out / "shards"
    d.mkdir(parents=True, exist_ok=True)
    stem = f"{index:05d}"
    rows = []
    with tarfile.open(d / f"{stem}.tar", "w") as tf:
        for s in samples:
            meta = {"key": s.key, "caption_single": s.caption_single, "caption_multi": s.caption_multi,
                    "lon": s.lon, "lat": s.lat}
            _add(tf, f"{s.key}.jpg", s.jpg)
            _add(tf, f"{s.key}.txt", s.caption_single.encode())
            _add(tf, f"{s.key}.json", json.dumps(meta).encode())
            half = 0.0005
            rows.append({"key": s.key, "shard": index, "osm_type": "way", "osm_id": int(s.key[1:]), "status": "ok",
                         "error_message": "", "caption_single": s.caption_single, "caption_multi": s.caption_multi,
                         "lon": s.lon, "lat": s.lat, "bbox": [s.lon - half, s.lat - half, s.lon + half, s.lat + half]})
    for j in range(failed):
        rows.append({"key": f"n{index}9{j}", "shard": index, "osm_type": "node", "osm_id": 1, "status": "failed",
                     "error_message": "no imagery: outside", "caption_single": None, "caption_multi": None,
                     "lon": None, "lat": None, "bbox": None})
    pq.write_table(pa.Table.from_pylist(rows), d / f"{stem}.parquet")
    (d / f"{stem}_stats.json").write_text(json.dumps({"shard": index, "count": len(rows)}))


def make_dataset(out: Path, n: int = 24, per_shard: int = 10, seed: int = 0, **kw: float) -> list[Sample]:
    samples = make_samples(n, seed, **kw)
    for i in range(0, n, per_shard):
        write_shard(out, i // per_shard, samples[i : i + per_shard], failed=1)
    return samples
