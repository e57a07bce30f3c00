"""``skyscript eval retrieval``: image→text and text→image recall@1/5/10 and their mean.

Each test sample is one image and one caption; the caption of sample *i* is the only correct
match of image *i* (captions repeated across samples — SkyScript has many "building" — count as
distinct items, as in the usual CLIP retrieval protocol). Embeddings are computed in batches with
worker processes, then ranked on the CPU in blocks so memory stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.errors import BadInputError
from storage.split import read_split
from training.clip_models import ClipBundle, load_clip
from training.samples import SampleRef, decode_rgb, index_dataset, read_jpeg

KS = (1, 5, 10)


@dataclass(frozen=True)
class RetrievalConfig:
    data: str
    checkpoint: str
    model: str | None = None
    split: str = "test"
    caption: str = "single"
    device: str = "auto"
    batch_size: int = 64
    workers: int = 2


class _Images(torch.utils.data.Dataset):
    def __init__(self, refs: list[SampleRef], preprocess: Any) -> None:
        self.refs, self.preprocess = refs, preprocess

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        try:
            return self.preprocess(decode_rgb(read_jpeg(self.refs[i]))), i
        except (OSError, ValueError, SyntaxError):
            return torch.zeros(0), -1  # dropped by the caller, counted


def _collate(items: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor | None, list[int]]:
    ok = [(t, i) for t, i in items if i >= 0]
    return (torch.stack([t for t, _ in ok]) if ok else None), [i for _, i in items]


def recall_at_k(sim: np.ndarray, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """Recall@k of rows against columns where row i's match is column i (both directions)."""
    n = sim.shape[0]
    diag = sim[np.arange(n), np.arange(n)]
    # rank = number of candidates scoring strictly higher than the match (ties resolved optimistically)
    rank_i2t = (sim > diag[:, None]).sum(1)
    rank_t2i = (sim > diag[None, :]).sum(0)
    res: dict[str, float] = {}
    for k in ks:
        res[f"image_to_text_R@{k}"] = float((rank_i2t < k).mean())
        res[f"text_to_image_R@{k}"] = float((rank_t2i < k).mean())
    res["mean_recall"] = float(np.mean([res[f"{d}_R@{k}"] for d in ("image_to_text", "text_to_image") for k in ks]))
    return res


def eval_refs(data: Path, split: str) -> list[SampleRef]:
    if split == "all":
        keys = None
    else:
        sp = read_split(data)
        if sp is None:
            raise BadInputError(f"{str(data)!r} has no split; run skyscript split {data} first (or --split all)")
        keys = {k for k, s in zip(sp["key"].to_pylist(), sp["split"].to_pylist(), strict=True) if s == split}
        if not keys:
            raise BadInputError(f"split {split!r} of {str(data)!r} is empty (splits: train, test, buffer)")
    refs, _ = index_dataset(data, None, keys)
    return refs


def embed(bundle: ClipBundle, refs: list[SampleRef], caption: str, batch_size: int,
          workers: int) -> tuple[np.ndarray, np.ndarray, int]:
    """L2-normalised image and caption embeddings of the readable samples (+ how many were not)."""
    loader = torch.utils.data.DataLoader(_Images(refs, bundle.preprocess_val), batch_size=batch_size,
                                         num_workers=workers, collate_fn=_collate)
    dev = bundle.device
    bundle.model.eval()
    imgs, txts, bad = [], [], 0
    amp = torch.autocast("cuda", dtype=torch.float16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)
    with torch.no_grad(), amp:
        for images, idx in loader:
            keep = [i for i in idx if i >= 0]
            bad += len(idx) - len(keep)
            if images is None:
                continue
            imgs.append(F.normalize(bundle.model.encode_image(images.to(dev)).float(), dim=-1).cpu())
            texts = [refs[i].caption(caption) or refs[i].caption_single for i in keep]
            txts.append(F.normalize(bundle.model.encode_text(bundle.tokenizer(texts).to(dev)).float(), dim=-1).cpu())
    if not imgs:
        raise BadInputError("no readable test images")
    return torch.cat(imgs).numpy(), torch.cat(txts).numpy(), bad


def evaluate_retrieval(cfg: RetrievalConfig, bundle: ClipBundle | None = None) -> dict[str, Any]:
    data = Path(cfg.data)
    refs = eval_refs(data, cfg.split)
    if len(refs) < 2:
        raise BadInputError(f"split {cfg.split!r} has {len(refs)} usable sample(s); retrieval needs at least 2")
    bundle = bundle or load_clip(cfg.model, cfg.checkpoint, cfg.device)
    img, txt, bad = embed(bundle, refs, cfg.caption, cfg.batch_size, cfg.workers)
    res = recall_at_k(img @ txt.T)
    return {"task": "retrieval", "model": bundle.model_id, "data": str(data), "split": cfg.split,
            "caption": cfg.caption, "samples": int(img.shape[0]), "unreadable": bad, **res}
