"""``skyscript satclip sample``, ``skyscript train satclip`` and ``skyscript eval location``.

:func:`register` adds them to the app: the ``satclip`` group is new; ``train satclip`` and
``eval location`` join the ``train``/``eval`` groups when another module made them, and
create them otherwise.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from pipeline.cli_util import err_console, friendly_errors
from pipeline.satclip.cli import satclip_app


@friendly_errors
def train_satclip_command(
    data: Annotated[str, typer.Option("--data", help="S2-100K-layout folder (index.csv + images/).")],
    out: Annotated[str, typer.Option("--out", help="Output folder: last.ckpt, metrics.jsonl (a rerun resumes).")],
    legendre: Annotated[int, typer.Option("--legendre", help="Legendre polynomials L (SatCLIP: 10 or 40).")] = 10,
    vision: Annotated[
        str,
        typer.Option("--vision", help="moco_resnet18 | moco_resnet50 | moco_vit16 (frozen SSL4EO) | vit (scratch)."),
    ] = "moco_resnet18",
    epochs: Annotated[int, typer.Option("--epochs")] = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Micro-batch (SatCLIP: 512).")] = 512,
    accumulate: Annotated[
        int, typer.Option("--accumulate", help="Micro-batches per optimizer step (SatCLIP: 16).")
    ] = 16,
    lr: Annotated[float, typer.Option("--lr")] = 1e-4,
    weight_decay: Annotated[float, typer.Option("--weight-decay")] = 0.01,
    embed_dim: Annotated[int, typer.Option("--embed-dim")] = 256,
    capacity: Annotated[int, typer.Option("--capacity", help="SIREN hidden width.")] = 512,
    hidden_layers: Annotated[int, typer.Option("--hidden-layers", help="SIREN hidden layers.")] = 2,
    sh_quirk: Annotated[
        bool, typer.Option("--sh-quirk", help="SatCLIP's released m = 0 scaling (π×); off = orthonormal harmonics.")
    ] = False,
    image_size: Annotated[int, typer.Option("--image-size", help="Random crop side (256 = whole patch).")] = 256,
    vit_width: Annotated[int, typer.Option("--vit-width")] = 128,
    vit_layers: Annotated[int, typer.Option("--vit-layers")] = 4,
    vit_patch: Annotated[int, typer.Option("--vit-patch")] = 32,
    no_pretrained: Annotated[
        bool, typer.Option("--no-pretrained", help="MoCo architectures with random weights (offline checks).")
    ] = False,
    no_augment: Annotated[
        bool, typer.Option("--no-augment", help="No flips, random crops or coordinate jitter.")
    ] = False,
    val_fraction: Annotated[
        float, typer.Option("--val-fraction", help="Patches held out for a validation loss (SatCLIP: 0.1).")
    ] = 0.1,
    no_amp: Annotated[bool, typer.Option("--no-amp", help="Disable mixed precision (CUDA only anyway).")] = False,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N.")] = "auto",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    workers: Annotated[int, typer.Option("--workers", help="DataLoader worker processes.")] = 0,
) -> None:
    """Train a SatCLIP location encoder (spherical harmonics → SIREN) against image patches."""
    from training.satclip.train import TrainConfig, train

    cfg = TrainConfig(
        data=data, out=out, legendre=legendre, vision=vision, epochs=epochs, batch_size=batch_size,
        accumulate=accumulate, lr=lr, weight_decay=weight_decay, embed_dim=embed_dim, capacity=capacity,
        num_hidden_layers=hidden_layers, sh_quirk=sh_quirk, image_size=image_size, vit_width=vit_width,
        vit_layers=vit_layers, vit_patch=vit_patch, pretrained=not no_pretrained, augment=not no_augment,
        val_fraction=val_fraction,
        amp=not no_amp, device=device,
        seed=seed, workers=workers,
    )  # fmt: skip
    result = train(cfg, progress=True)
    if result["epochs"]:
        last = result["epochs"][-1]
        err_console.print(
            f"eval loss {result['initial_eval_loss']:.4f} → {last['eval_loss']:.4f} after epoch {last['epoch']}; "
            f"checkpoint {result['checkpoint']} (load with training.satclip.load)"
        )
    else:
        err_console.print(f"nothing to do: {result['checkpoint']} already has {epochs} epoch(s)")


@friendly_errors
def eval_location_command(
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="SatCLIP checkpoint (this project's or released).")],
    table: Annotated[str, typer.Option("--table", help="CSV or parquet with lon, lat and the target column.")],
    target: Annotated[str, typer.Option("--target", help="Target column.")] = "target",
    task: Annotated[str, typer.Option("--task", help="auto | regression | classification.")] = "auto",
    folds: Annotated[int, typer.Option("--folds")] = 5,
    block_deg: Annotated[float, typer.Option("--block-deg", help="Spatial block size (degrees) for the folds.")] = 10.0,
    lon_col: Annotated[str, typer.Option("--lon")] = "lon",
    lat_col: Annotated[str, typer.Option("--lat")] = "lat",
    out: Annotated[str, typer.Option("--out", help="Write the report as JSON here too.")] = "",
) -> None:
    """Linear-probe a location encoder on (lon, lat, target) with spatially blocked folds, vs raw (lon, lat)."""
    from storage.atomic import publishing
    from training.satclip.evaluate import ProbeConfig, evaluate_location

    cfg = ProbeConfig(target=target, task=task, folds=folds, block_deg=block_deg, lon_col=lon_col, lat_col=lat_col)
    report = evaluate_location(checkpoint, table, cfg)
    text = json.dumps(report, indent=1)
    if out:
        with publishing(out) as tmp:
            tmp.write_text(text)
    typer.echo(text)


def _group(app: typer.Typer, name: str, help_text: str) -> typer.Typer:
    for info in app.registered_groups:
        if info.name == name and info.typer_instance is not None:
            return info.typer_instance
    group = typer.Typer(help=help_text, no_args_is_help=True)
    app.add_typer(group, name=name)
    return group


def register(app: typer.Typer) -> None:
    """Add ``satclip sample``, ``train satclip`` and ``eval location`` to ``app``."""
    app.add_typer(satclip_app, name="satclip")
    _group(app, "train", "Train models.").command("satclip")(train_satclip_command)
    _group(app, "eval", "Evaluate models.").command("location")(eval_location_command)
