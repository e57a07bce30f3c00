"""GRAFT training data: samples from build-graft shards, ground-photo CLIP embeddings computed once
and cached per shard, and batches with crop/flip augmentation of the 2× satellite image.

A batch: ``images`` [B, 3, S, S] (CLIP-normalised), ``ground`` [N, D] (frozen CLIP embeddings of
the photos), ``owner`` [N] (tile index of each photo), ``px``/``py`` [N] (photo position in model
input pixels) and ``inside`` [N] (photo inside the crop).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from PIL import Image

from pipeline.cache import cache_dir
from pipeline.errors import BadInputError
from pipeline.graft.writer import shard_urls
from storage.atomic import publishing

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class TileSample:
    key: str
    split: str
    sat: bytes
    photo_ids: list[str]
    px: list[float]  # photo x in the fetched image (pixels)
    py: list[float]
    tile_width: int
    width: int


def iter_tiles(shards: Sequence[str]) -> Iterator[tuple[TileSample, dict[str, bytes]]]:
    """Samples with their photo JPEGs (photos without pixels are left out)."""
    ds = wds.WebDataset(list(shards), shardshuffle=False, empty_check=False)
    for s in ds:
        meta = json.loads(s["json"])
        photos = [p for p in meta["photos"] if p.get("file") and p["file"] in s]
        yield (
            TileSample(
                key=s["__key__"], split=meta.get("split", "train"), sat=s["sat.jpg"],
                photo_ids=[p["photo_id"] for p in photos], px=[float(p["px_x"]) for p in photos],
                py=[float(p["px_y"]) for p in photos], tile_width=int(meta["tile_width"]), width=int(meta["width"]),
            ),
            {p["photo_id"]: s[p["file"]] for p in photos},
        )


def shard_list(dataset: str | Path) -> list[str]:
    d = Path(dataset)
    urls = shard_urls(d / "shards") if (d / "shards").is_dir() else shard_urls(d)
    if not urls:
        raise BadInputError(f"no finished GRAFT shards under {str(d)!r}; build them with `skyscript build-graft`")
    return urls


def embed_ground_photos(shards: Sequence[str], teacher: Any, preprocess: Any, model_id: str,
                        device: torch.device, batch_size: int = 64) -> dict[str, np.ndarray]:
    """photo_id → L2-normalised CLIP image embedding (float16), cached per shard and model."""
    out: dict[str, np.ndarray] = {}
    for url in shards:
        p = Path(url)
        st = p.stat()
        tag = hashlib.sha256(f"{model_id}|{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:24]
        cached = cache_dir("graft", "ground_embeddings") / f"{tag}.npz"
        if cached.is_file():
            z = np.load(cached, allow_pickle=False)
            out.update(zip(z["ids"].tolist(), z["emb"], strict=True))
            continue
        ids: list[str] = []
        vecs: list[np.ndarray] = []
        pending: list[tuple[str, bytes]] = [(pid, b) for _t, photos in iter_tiles([url]) for pid, b in photos.items()]
        for i in range(0, len(pending), batch_size):
            chunk = pending[i : i + batch_size]
            x = torch.stack([preprocess(Image.open(io.BytesIO(b)).convert("RGB")) for _pid, b in chunk]).to(device)
            with torch.no_grad():
                e = torch.nn.functional.normalize(teacher.encode_image(x).float(), dim=-1)
            ids.extend(pid for pid, _b in chunk)
            vecs.append(e.cpu().numpy().astype(np.float16))
        emb = np.concatenate(vecs) if vecs else np.zeros((0, 1), np.float16)
        with publishing(cached) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, ids=np.array(ids, dtype=str), emb=emb)
        out.update(zip(ids, emb, strict=True))
    return out


def _to_tensor(img: Image.Image, size: int) -> torch.Tensor:
    a = np.asarray(img.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
    t = torch.from_numpy(a).permute(2, 0, 1)
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    return (t - mean) / std


def prepare_tile(t: TileSample, size: int, rng: np.random.Generator | None, max_shift: float = 0.25
                 ) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
    """Crop one tile-sized window of the 2× image (jittered by up to ``max_shift`` of a tile when training,
    centred otherwise), flip at random, resize to the model; photo positions follow."""
    img = Image.open(io.BytesIO(t.sat)).convert("RGB")
    crop = t.tile_width
    base = (t.width - crop) / 2.0
    if rng is not None:
        lim = min(base, max_shift * crop)
        ox, oy = base + rng.uniform(-lim, lim), base + rng.uniform(-lim, lim)
    else:
        ox = oy = base
    ox, oy = round(ox), round(oy)
    img = img.crop((ox, oy, ox + crop, oy + crop))
    x = (np.asarray(t.px) - ox) * size / crop
    y = (np.asarray(t.py) - oy) * size / crop
    if rng is not None and rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = size - x
    inside = (x >= 0) & (x < size) & (y >= 0) & (y < size)
    return _to_tensor(img, size), x, y, inside


@dataclass
class Batch:
    images: torch.Tensor
    ground: torch.Tensor
    owner: torch.Tensor
    px: torch.Tensor
    py: torch.Tensor
    inside: torch.Tensor
    keys: list[str]


def collate(tiles: Sequence[TileSample], emb: dict[str, np.ndarray], size: int,
            rng: np.random.Generator | None) -> Batch | None:
    imgs: list[torch.Tensor] = []
    ground: list[np.ndarray] = []
    owner: list[int] = []
    xs: list[float] = []
    ys: list[float] = []
    ins: list[bool] = []
    keys: list[str] = []
    for t in tiles:
        have = [i for i, pid in enumerate(t.photo_ids) if pid in emb]
        if not have:
            continue
        img, x, y, inside = prepare_tile(t, size, rng)
        b = len(imgs)
        imgs.append(img)
        keys.append(t.key)
        for i in have:
            ground.append(emb[t.photo_ids[i]].astype(np.float32))
            owner.append(b)
            xs.append(x[i])
            ys.append(y[i])
            ins.append(bool(inside[i]))
    if not imgs:
        return None
    return Batch(torch.stack(imgs), torch.from_numpy(np.stack(ground)), torch.tensor(owner),
                 torch.tensor(xs, dtype=torch.float32), torch.tensor(ys, dtype=torch.float32),
                 torch.tensor(ins), keys)


def load_tiles(shards: Sequence[str], split: str | None) -> list[TileSample]:
    """Tiles of one split (``None``: all), photo bytes dropped (the embeddings stand for them)."""
    return [t for t, _photos in iter_tiles(shards) if split is None or t.split == split]
