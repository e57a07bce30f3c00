"""``skyscript train satclip``: contrastive training of the location encoder against image patches.

As SatCLIP: symmetric CLIP loss with a learnable temperature, AdamW (no decay on norms,
biases, gains and the temperature), gradient accumulation over micro-batches (batch 512 ×
16 in the paper), a frozen MoCo backbone with a trainable head or a ViT from scratch.
Mixed precision covers only the vision encoder on CUDA; the location encoder always runs
in float64 (its high-degree harmonics lose accuracy in half precision). Every epoch ends
with ``last.ckpt`` written atomically; a rerun with the same flags resumes from it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from pipeline.errors import BadInputError, OutputConflictError
from training.satclip import checkpoint
from training.satclip.data import S2Patches
from training.satclip.location import LocationConfig
from training.satclip.model import SatCLIPModel, clip_loss, param_groups
from training.satclip.vision import build_vision, in_channels


@dataclass(frozen=True)
class TrainConfig:
    data: str
    out: str
    legendre: int = 10
    vision: str = "moco_resnet18"
    epochs: int = 1
    batch_size: int = 512
    accumulate: int = 16
    lr: float = 1e-4
    weight_decay: float = 0.01
    embed_dim: int = 256
    capacity: int = 512
    num_hidden_layers: int = 2
    sh_quirk: bool = False
    image_size: int = 256
    vit_width: int = 128
    vit_layers: int = 4
    vit_patch: int = 32
    pretrained: bool = True
    augment: bool = True  # flips, random crops, coordinate jitter (SatCLIP's training transform)
    val_fraction: float = 0.1  # held out (seeded random split, as SatCLIP's data module)
    amp: bool = True
    device: str = "auto"
    seed: int = 0
    workers: int = 0

    def __post_init__(self) -> None:
        if self.legendre not in (10, 40) and not 1 <= self.legendre <= 100:
            raise BadInputError(f"--legendre must be 10 or 40 (or 1..100), got {self.legendre}")
        if self.epochs < 1 or self.batch_size < 2 or self.accumulate < 1:
            raise BadInputError("--epochs >= 1, --batch-size >= 2 (the loss needs negatives), --accumulate >= 1")
        if not 0 <= self.val_fraction < 1:
            raise BadInputError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if not 1 <= self.image_size <= 256:
            raise BadInputError(f"--image-size must be in 1..256 (patches are 256 px), got {self.image_size}")

    def location(self) -> LocationConfig:
        return LocationConfig(self.legendre, self.embed_dim, self.capacity, self.num_hidden_layers, self.sh_quirk)

    def resume_key(self) -> dict[str, Any]:
        """What must match for a rerun to resume (epochs may grow)."""
        d = asdict(self)
        for k in ("epochs", "device", "workers", "out"):
            d.pop(k)
        return d


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_model(cfg: TrainConfig) -> SatCLIPModel:
    visual = build_vision(
        cfg.vision, cfg.embed_dim, cfg.image_size, cfg.pretrained, cfg.vit_width, cfg.vit_layers, cfg.vit_patch
    )
    return SatCLIPModel(visual, cfg.location())


def _crop(img: torch.Tensor, size: int, gen: torch.Generator, random: bool = True) -> torch.Tensor:
    if img.shape[-1] == size:
        return img
    if not random:
        off = (img.shape[-1] - size) // 2
        return img[..., off : off + size, off : off + size]
    top = int(torch.randint(0, img.shape[-2] - size + 1, (1,), generator=gen))
    left = int(torch.randint(0, img.shape[-1] - size + 1, (1,), generator=gen))
    return img[..., top : top + size, left : left + size]


@torch.no_grad()
def eval_loss(
    model: SatCLIPModel,
    data: S2Patches,
    cfg: TrainConfig,
    device: torch.device,
    indices: list[int] | None = None,
    limit: int = 512,
) -> float:
    """Loss on the first ``limit`` of ``indices`` without augmentation, dropout or jitter (a fixed yardstick)."""
    was = model.training
    model.eval()
    aug = data.augment
    data.augment = False
    try:
        chosen = (list(range(len(data))) if indices is None else indices)[:limit]
        n = len(chosen)
        losses, weights = [], []
        for start in range(0, n, cfg.batch_size):
            idx = chosen[start : min(n, start + cfg.batch_size)]
            if len(idx) < 2:
                break
            items = [data[i] for i in idx]
            img = torch.stack([it["image"] for it in items])
            off = (img.shape[-1] - cfg.image_size) // 2
            img = img[..., off : off + cfg.image_size, off : off + cfg.image_size].to(device)
            pts = torch.stack([it["point"] for it in items]).to(device)
            logits, logits_t = model(img, pts)
            losses.append(float(clip_loss(logits, logits_t)))
            weights.append(len(idx))
        return sum(w * v for w, v in zip(weights, losses, strict=True)) / sum(weights)
    finally:
        data.augment = aug
        model.train(was)


def train(cfg: TrainConfig, progress: bool = False) -> dict[str, Any]:
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    data = S2Patches(cfg.data, channels=in_channels(cfg.vision), augment=cfg.augment, seed=cfg.seed)
    if len(data) < 2:
        raise BadInputError(f"{cfg.data} holds {len(data)} patch(es); contrastive training needs at least 2")
    perm = np.random.default_rng(cfg.seed).permutation(len(data)).tolist()
    n_val = int(len(data) * cfg.val_fraction)
    n_val = n_val if n_val >= 2 and len(data) - n_val >= 2 else 0  # the loss needs 2 pairs a side
    val_idx, train_idx = sorted(perm[:n_val]), sorted(perm[n_val:])
    model = build_model(cfg).to(device)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    hparams = checkpoint.hyper_parameters(cfg, in_channels(cfg.vision))
    start_epoch, step = 0, 0
    last = out / "last.ckpt"
    if last.is_file():
        ckpt = checkpoint.read(last)
        if ckpt.get("skyscript", {}).get("config") != cfg.resume_key():
            raise OutputConflictError(f"{last} was trained with other settings; use a new --out or the same flags")
        model.load_state_dict({k[len("model.") :]: v for k, v in ckpt["state_dict"].items()})
        opt.load_state_dict(ckpt["optimizer_states"][0])
        start_epoch, step = int(ckpt["epoch"]) + 1, int(ckpt["global_step"])
    gen = torch.Generator().manual_seed(cfg.seed + start_epoch)
    loader = DataLoader(
        Subset(data, train_idx),
        batch_size=cfg.batch_size,
        shuffle=True,
        generator=gen,
        num_workers=cfg.workers,
        drop_last=len(train_idx) % cfg.batch_size == 1,
    )
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    history: list[dict[str, Any]] = []
    initial = eval_loss(model, data, cfg, device, train_idx)
    log = open(out / "metrics.jsonl", "a")  # noqa: SIM115 - closed below
    try:
        for epoch in range(start_epoch, cfg.epochs):
            model.train()
            t0, losses = time.perf_counter(), []
            opt.zero_grad(set_to_none=True)
            n_batches = len(loader)
            for i, batch in enumerate(loader):
                img = _crop(batch["image"], cfg.image_size, gen, cfg.augment).to(device, non_blocking=True)
                pts = batch["point"].to(device)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    img_feat = model.encode_image(img)
                loc_feat = model.encode_location(pts)  # float64, outside autocast
                img_n = torch.nn.functional.normalize(img_feat.float(), dim=1)
                loc_n = torch.nn.functional.normalize(loc_feat.float(), dim=1)
                logits = model.logit_scale.exp() * img_n @ loc_n.t()
                loss = clip_loss(logits, logits.t())
                scaler.scale(loss / cfg.accumulate).backward()
                losses.append(float(loss.detach()))
                if (i + 1) % cfg.accumulate == 0 or i + 1 == n_batches:
                    scaler.step(opt)
                    scaler.update()
                    opt.zero_grad(set_to_none=True)
                    with torch.no_grad():
                        model.logit_scale.clamp_(0, math.log(100))
                    step += 1
                    rec = {
                        "epoch": epoch,
                        "step": step,
                        "loss": losses[-1],
                        "logit_scale": float(model.logit_scale.detach()),
                    }
                    log.write(json.dumps(rec) + "\n")
            summary = {
                "epoch": epoch,
                "loss": sum(losses) / len(losses),
                "eval_loss": eval_loss(model, data, cfg, device, train_idx),
                "val_loss": eval_loss(model, data, cfg, device, val_idx) if val_idx else None,
                "seconds": round(time.perf_counter() - t0, 3),
                "samples": len(train_idx),
                "val_samples": len(val_idx),
            }
            history.append(summary)
            log.write(json.dumps({"epoch_summary": summary}) + "\n")
            log.flush()
            checkpoint.save(
                last,
                model,
                hparams,
                {
                    "epoch": epoch,
                    "global_step": step,
                    "optimizer_states": [opt.state_dict()],
                    "skyscript": {"format": checkpoint.FORMAT, "config": cfg.resume_key(), "sh_quirk": cfg.sh_quirk},
                },
            )
            if progress:
                print(
                    f"epoch {epoch}: loss {summary['loss']:.4f}, eval loss {summary['eval_loss']:.4f} "
                    f"({summary['seconds']} s)",
                    flush=True,
                )
    finally:
        log.close()
    return {
        "epochs": history,
        "initial_eval_loss": initial,
        "checkpoint": str(last),
        "start_epoch": start_epoch,
        "device": str(device),
    }
