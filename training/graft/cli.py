"""``skyscript train graft``: torch/open_clip are imported inside the command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli_util import err_console, friendly_errors


@friendly_errors
def train_graft_command(
    dataset: Annotated[Path, typer.Argument(help="A build-graft output folder (its shards/).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for checkpoints and train_log.json.")],
    model: Annotated[str, typer.Option("--model", help="open_clip ViT architecture of the teacher/student.")]
    = "ViT-B-16",
    pretrained: Annotated[str, typer.Option("--pretrained", help="Teacher weights: open_clip tag or a local "
                                            "checkpoint file.")] = "openai",
    level: Annotated[str, typer.Option("--level", help="image (one embedding per tile) or pixel (patch tokens "
                                       "under each photo).")] = "image",
    epochs: Annotated[int, typer.Option("--epochs")] = 10,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Tiles per batch.")] = 64,
    lr: Annotated[float, typer.Option("--lr")] = 1e-5,
    warmup_steps: Annotated[int, typer.Option("--warmup-steps")] = 100,
    max_steps: Annotated[int | None, typer.Option("--max-steps")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cuda, cuda:N or cpu.")] = "auto",
) -> None:
    """Train a GRAFT satellite image encoder aligned with CLIP embeddings of co-located ground photos."""
    from training.graft.train import GraftTrainConfig, train_graft

    cfg = GraftTrainConfig(model=model, pretrained=pretrained, level=level, epochs=epochs, batch_size=batch_size,
                           lr=lr, warmup_steps=warmup_steps, max_steps=max_steps, seed=seed, device=device)
    res = train_graft(dataset, out, cfg, log=lambda m: err_console.print(m))
    first, last = (res.losses[0], res.losses[-1]) if res.losses else (float("nan"), float("nan"))
    typer.echo(f"trained {res.steps} steps in {res.seconds:.1f} s: loss {first:.4f} -> {last:.4f}; "
               f"checkpoint {res.checkpoint}")
