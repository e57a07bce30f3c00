"""``skyscript train skyclip``: SkyScript's continual pre-training, on open_clip's own training package.

What is reused from ``open_clip_train`` rather than rewritten: its argument defaults
(``params.parse_args``), device/DDP set-up (``init_distributed_device``, so ``torchrun`` works
as for open_clip), the epoch loop with AMP, gradient scaling and logging (``train_one_epoch``),
the cosine schedule with linear warm-up (``cosine_lr``) and the contrastive loss
(``create_loss`` → ``ClipLoss``, gathered across ranks). What is ours: the data (a selection of a
build, test split held out, random 90° rotations), checkpoints that ``open_clip`` loads as
``pretrained=`` (plain state dicts + a sidecar naming the architecture), resume, and a
per-step loss log (``losses.jsonl``).

The SkyScript recipe as defaults: AdamW, cosine schedule with warm-up, 20 epochs, batch 512
(global: split across processes), random 90° rotations. The learning rate and warm-up were not
stated in what this toolkit could consult; 1e-5 and 1000 steps (capped at a tenth of the run)
are conventional for CLIP continual pre-training — override them with ``--lr``/``--warmup``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from pipeline.errors import BadInputError, OutputConflictError
from storage.atomic import publishing
from training.clip_models import load_clip, model_id

log = logging.getLogger("skyscript.skyclip")


@dataclass(frozen=True)
class SkyClipConfig:
    data: str
    out: str
    selection: str = "top30"
    caption: str = "single"
    model: str = "ViT-B-32"
    pretrained: str = "laion2b_s34b_b79k"
    epochs: int = 20
    batch_size: int = 512  # global; each of N processes takes batch_size / N
    lr: float = 1e-5
    wd: float = 0.1
    warmup: int = 1000
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    precision: str = "auto"  # amp on CUDA, fp32 on CPU
    device: str = "auto"
    workers: int = 4
    seed: int = 0
    rotate: bool = True
    resume: bool = False
    log_every: int = 10
    grad_checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2:
            raise BadInputError("--epochs must be >= 1 and --batch-size >= 2 (contrastive loss needs pairs)")
        if self.lr <= 0:
            raise BadInputError(f"--lr {self.lr}: give a positive learning rate")


class RecordingLoss(torch.nn.Module):
    """open_clip's loss, recording each step's total (train_one_epoch logs only every N steps)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.history: list[float] = []

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.inner(*args, **kwargs)
        total: Any = sum(out.values()) if isinstance(out, dict) else out
        self.history.append(float(total.detach()))
        return out


def _open_clip_args(cfg: SkyClipConfig, device: str, per_rank_batch: int) -> Any:
    from open_clip_train.params import parse_args

    args = parse_args([
        "--model", cfg.model, "--batch-size", str(per_rank_batch), "--epochs", str(cfg.epochs),
        "--lr", str(cfg.lr), "--wd", str(cfg.wd), "--warmup", str(cfg.warmup), "--beta1", str(cfg.beta1),
        "--beta2", str(cfg.beta2), "--eps", str(cfg.eps), "--workers", str(cfg.workers), "--seed", str(cfg.seed),
        "--log-every-n-steps", str(cfg.log_every), "--report-to", "",
    ])
    args.device = device
    args.wandb = False
    args.distill = False  # main.py derives this from --distill-model; we never distil
    return args


def _checkpoints(out: Path) -> dict[int, Path]:
    d = out / "checkpoints"
    found = {}
    for p in d.glob("epoch_*.pt") if d.is_dir() else []:
        try:
            found[int(p.stem.split("_")[1])] = p
        except (IndexError, ValueError):
            continue
    return dict(sorted(found.items()))


def _save(out: Path, epoch: int, model: torch.nn.Module, optimizer: Any, scaler: Any, cfg: SkyClipConfig,
          metrics: dict[str, Any]) -> Path:
    ckpt = out / "checkpoints" / f"epoch_{epoch}.pt"
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with publishing(ckpt) as tmp:
        torch.save(state, tmp)  # tensors only: loads with weights_only=True and as open_clip pretrained=
    with publishing(ckpt.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps({"model": cfg.model, "epoch": epoch, "base": model_id(cfg.model, cfg.pretrained),
                                   **metrics}, indent=1), encoding="utf-8")
    train_state = {"epoch": epoch, "optimizer": optimizer.state_dict()}
    if scaler is not None:
        train_state["scaler"] = scaler.state_dict()
    with publishing(out / "checkpoints" / "train_state.pt") as tmp:  # written last: resume trusts it
        torch.save(train_state, tmp)
    return ckpt


def train_skyclip(cfg: SkyClipConfig) -> dict[str, Any]:
    """Train; returns a summary (checkpoint paths, per-epoch mean loss, samples)."""
    from open_clip import create_loss
    from open_clip_train.data import DataInfo
    from open_clip_train.distributed import init_distributed_device, is_master
    from open_clip_train.scheduler import cosine_lr
    from open_clip_train.train import train_one_epoch

    from training.clip_models import resolve_device
    from training.skyclip.data import PairDataset, make_loader, training_refs

    out = Path(cfg.out)
    done = _checkpoints(out)
    if done and not cfg.resume:
        raise OutputConflictError(
            f"{out} already holds checkpoints (epoch {max(done)}); pass --resume to continue or another --out"
        )
    dev = resolve_device(cfg.device)  # checks "cuda" on a machine without one
    probe = _open_clip_args(cfg, str(dev), cfg.batch_size)
    device = init_distributed_device(probe)  # torchrun: reads RANK/WORLD_SIZE, inits the process group
    world = probe.world_size
    if cfg.batch_size % world:
        raise BadInputError(f"--batch-size {cfg.batch_size} does not split evenly over {world} processes")
    args = _open_clip_args(cfg, str(device), cfg.batch_size // world)
    for k in ("distributed", "world_size", "rank", "local_rank"):
        setattr(args, k, getattr(probe, k))
    args.precision = ("amp" if device.type == "cuda" else "fp32") if cfg.precision == "auto" else cfg.precision
    torch.manual_seed(cfg.seed + args.rank)

    bundle = load_clip(cfg.model, cfg.pretrained, str(device), output_dict=True)  # train_one_epoch wants a dict
    model = bundle.model
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing()
    refs, data_info = training_refs(Path(cfg.data), cfg.selection)
    ds = PairDataset(refs, cfg.caption, bundle.preprocess_train, bundle.tokenizer, cfg.rotate)
    loader, sampler = make_loader(ds, args.batch_size, cfg.workers, args.distributed, cfg.seed,
                                  device.type == "cuda")
    data = {"train": DataInfo(loader, sampler)}
    if args.distributed:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    unwrapped = model.module if args.distributed else model

    # AdamW with open_clip's split: no weight decay on gains, biases and the logit scale.
    named = [(n, p) for n, p in unwrapped.named_parameters() if p.requires_grad]
    no_wd = [p for n, p in named if p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n]
    rest = [p for n, p in named if not (p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n)]
    optimizer = torch.optim.AdamW(
        [{"params": no_wd, "weight_decay": 0.0}, {"params": rest, "weight_decay": cfg.wd}],
        lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
    )
    scaler = torch.amp.GradScaler(device=device.type) if args.precision == "amp" and device.type == "cuda" else None
    total_steps = loader.num_batches * cfg.epochs  # type: ignore[attr-defined]
    warmup = min(cfg.warmup, max(1, total_steps // 10))
    scheduler = cosine_lr(optimizer, cfg.lr, warmup, total_steps)

    start = 0
    if done:
        last = max(done)
        unwrapped.load_state_dict(torch.load(done[last], map_location="cpu", weights_only=True))
        st_path = out / "checkpoints" / "train_state.pt"
        if st_path.is_file():
            st = torch.load(st_path, map_location="cpu", weights_only=True)
            if int(st.get("epoch", -1)) == last:
                optimizer.load_state_dict(st["optimizer"])
                if scaler is not None and "scaler" in st:
                    scaler.load_state_dict(st["scaler"])
        start = last
        log.info("resuming from %s (epoch %d)", done[last], last)

    loss = RecordingLoss(create_loss(args))
    master = is_master(args)
    if master:
        out.mkdir(parents=True, exist_ok=True)
        with publishing(out / "config.json") as tmp:
            tmp.write_text(json.dumps({**asdict(cfg), "world_size": world, "precision_used": args.precision,
                                       "warmup_used": warmup, "total_steps": total_steps, "data": data_info},
                                      indent=1, default=str), encoding="utf-8")
    epochs: list[dict[str, Any]] = []
    saved: list[str] = []
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        n0 = len(loss.history)
        train_one_epoch(model, data, loss, epoch, optimizer, scaler, scheduler, None, args, tb_writer=None)
        steps = loss.history[n0:]
        row = {"epoch": epoch + 1, "mean_loss": sum(steps) / max(1, len(steps)), "steps": len(steps),
               "seconds": round(time.perf_counter() - t0, 2), "unreadable_images": len(ds.bad)}
        epochs.append(row)
        if master:
            with open(out / "losses.jsonl", "a", encoding="utf-8") as f:
                for i, v in enumerate(steps):
                    f.write(json.dumps({"epoch": epoch + 1, "step": i, "loss": v}) + "\n")
            saved.append(str(_save(out, epoch + 1, unwrapped, optimizer, scaler, cfg, row)))
            log.info("epoch %d: mean loss %.4f over %d steps", epoch + 1, row["mean_loss"], len(steps))
        if args.distributed:
            torch.distributed.barrier()
    if args.distributed:
        torch.distributed.destroy_process_group()
    if not math.isfinite(epochs[-1]["mean_loss"] if epochs else 0.0):
        raise BadInputError("training diverged (loss is not finite); lower --lr")
    return {"checkpoints": saved, "epochs": epochs, "data": data_info, "world_size": world,
            "per_process_batch": args.batch_size, "steps_per_epoch": loader.num_batches}  # type: ignore[attr-defined]
