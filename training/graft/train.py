"""``skyscript train graft``: train a GRAFT satellite encoder on build-graft shards.

The teacher is a frozen open_clip model (any name + pretrained tag or local checkpoint); its image
tower embeds the ground photos once (cached), and a copy of that tower is trained on the satellite
images: image level (multi-positive contrastive loss) or pixel level (the patch token under each
photo). AdamW (weight decay 1e-2), linear warm-up then cosine decay, temperature 0.07.

Checkpoints: ``OUT/graft_epochNN.pt`` and ``OUT/graft_latest.pt`` (a dict: format, architecture,
teacher weights reference, the open_clip config, the trained visual state dict, the training
config), each with a ``.json`` sidecar naming the architecture (the convention of
``training.clip_models``); written atomically.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.errors import BadInputError
from storage.atomic import publishing
from training.graft.data import Batch, collate, embed_ground_photos, load_tiles, shard_list
from training.graft.loss import TEMPERATURE, multi_positive_loss, pixel_loss
from training.graft.model import GraftEncoder

FORMAT = "skyscript-graft/1"
LEVELS = ("image", "pixel")


@dataclass(frozen=True)
class GraftTrainConfig:
    model: str = "ViT-B-16"
    pretrained: str | None = "openai"  # teacher weights: an open_clip tag or a local checkpoint file
    level: str = "image"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-5
    weight_decay: float = 1e-2
    warmup_steps: int = 100
    max_steps: int | None = None
    temperature: float = TEMPERATURE
    max_shift: float = 0.25  # crop jitter, as a fraction of the tile
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise BadInputError(f"--level must be image or pixel, got {self.level!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise BadInputError("--epochs and --batch-size must be at least 1")
        if self.lr <= 0:
            raise BadInputError(f"--lr must be positive, got {self.lr}")


@dataclass
class TrainResult:
    steps: int
    losses: list[float] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    checkpoint: str = ""
    seconds: float = 0.0


def lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up to 1, then cosine decay to 0 over the remaining steps."""

    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        rest = max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / rest)))

    return f


def graft_loss(enc: GraftEncoder, batch: Batch, level: str, temperature: float) -> torch.Tensor:
    img, patches = enc(batch.images)
    if level == "image":
        return multi_positive_loss(img, batch.ground, batch.owner, temperature)
    idx = enc.patch_index(batch.px, batch.py)
    under = patches[batch.owner, idx]  # the patch token under each photo, from its own tile
    return pixel_loss(under, batch.ground, batch.owner, batch.inside, temperature)


def _load_teacher(cfg: GraftTrainConfig) -> Any:
    from training.clip_models import load_clip

    return load_clip(cfg.model, cfg.pretrained, device=cfg.device)


def evaluate(enc: GraftEncoder, tiles: list[Any], emb: dict[str, np.ndarray], cfg: GraftTrainConfig,
             device: torch.device) -> dict[str, float]:
    """Eval hook: mean loss and satellite→ground top-1 (is the best photo one of the tile's own?)."""
    if not tiles:
        return {}
    enc.eval()
    losses, hits, n = [], 0, 0
    with torch.no_grad():
        for i in range(0, len(tiles), cfg.batch_size):
            b = collate(tiles[i : i + cfg.batch_size], emb, enc.image_size, None)
            if b is None:
                continue
            b = _to(b, device)
            losses.append(float(graft_loss(enc, b, cfg.level, cfg.temperature)))
            img, _ = enc(b.images)
            best = (img @ b.ground.T).argmax(dim=1)
            hits += int((b.owner[best] == torch.arange(len(img), device=device)).sum())
            n += len(img)
    enc.train()
    return {"loss": float(np.mean(losses)) if losses else float("nan"), "top1": hits / max(1, n), "tiles": n}


def _to(b: Batch, device: torch.device) -> Batch:
    return Batch(b.images.to(device), b.ground.to(device), b.owner.to(device), b.px.to(device), b.py.to(device),
                 b.inside.to(device), b.keys)


def save_checkpoint(path: Path, enc: GraftEncoder, cfg: GraftTrainConfig, step: int, extra: dict[str, Any]) -> None:
    import open_clip

    payload = {
        "format": FORMAT, "model": cfg.model, "pretrained": cfg.pretrained, "level": cfg.level,
        "model_cfg": open_clip.get_model_config(cfg.model), "visual": enc.visual.state_dict(), "step": step,
        "config": asdict(cfg), **extra,
    }
    with publishing(path) as tmp:
        torch.save(payload, tmp)
    side = {"model": cfg.model, "kind": "graft", "format": FORMAT, "level": cfg.level, "teacher": cfg.pretrained,
            "step": step}
    with publishing(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(side, indent=1))


def train_graft(dataset: str | Path, out: str | Path, cfg: GraftTrainConfig,
                log: Callable[[str], None] = lambda _m: None) -> TrainResult:
    """Train on the ``train`` split of a build-graft output; evaluate on ``test`` after each epoch."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    t0 = time.perf_counter()
    shards = shard_list(dataset)
    teacher = _load_teacher(cfg)
    device = teacher.device
    teacher.model.eval()
    emb = embed_ground_photos(shards, teacher.model, teacher.preprocess_val, teacher.model_id, device)
    if not emb:
        raise BadInputError(
            f"{str(dataset)!r} holds no ground photo pixels (built with --metadata-only?); GRAFT training needs them"
        )
    train = load_tiles(shards, "train")
    test = load_tiles(shards, "test")
    if not train:
        raise BadInputError(f"{str(dataset)!r} has no tiles in the train split")
    enc = GraftEncoder(teacher.model.visual).to(device)
    enc.train()
    del teacher.model.visual  # the teacher's image tower is not needed any more
    opt = torch.optim.AdamW([p for p in enc.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = min(cfg.max_steps or per_epoch * cfg.epochs, per_epoch * cfg.epochs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(min(cfg.warmup_steps, total // 2), total))
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    res = TrainResult(steps=0)
    log(f"{len(train)} train / {len(test)} test tiles, {len(emb)} ground photos embedded; {total} steps")
    for epoch in range(cfg.epochs):
        order = rng.permutation(len(train))
        for i in range(0, len(order), cfg.batch_size):
            if res.steps >= total:
                break
            b = collate([train[j] for j in order[i : i + cfg.batch_size]], emb, enc.image_size, rng)
            if b is None:
                continue
            loss = graft_loss(enc, _to(b, device), cfg.level, cfg.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            res.steps += 1
            res.losses.append(float(loss.detach()))
        ev = evaluate(enc, test, emb, cfg, device)
        res.evals.append(ev)
        log(f"epoch {epoch + 1}: train loss {np.mean(res.losses[-per_epoch:]):.4f}; test {ev}")
        ckpt = out_dir / f"graft_epoch{epoch + 1:02d}.pt"
        save_checkpoint(ckpt, enc, cfg, res.steps, {"epoch": epoch + 1, "eval": ev})
        save_checkpoint(out_dir / "graft_latest.pt", enc, cfg, res.steps, {"epoch": epoch + 1, "eval": ev})
        res.checkpoint = str(out_dir / "graft_latest.pt")
        if res.steps >= total:
            break
    res.seconds = time.perf_counter() - t0
    with publishing(out_dir / "train_log.json") as tmp:
        tmp.write_text(json.dumps(asdict(res), indent=1))
    return res
