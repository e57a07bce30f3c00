"""``skyscript score``, ``skyscript train skyclip`` and ``skyscript eval retrieval|zeroshot``.

torch and open_clip are imported inside the commands so ``skyscript --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli_util import err_console, friendly_errors


@friendly_errors
def score_command(
    out: Annotated[str, typer.Argument(help="Dataset folder (a skyscript build's --out), or its s3://BUCKET/PREFIX.")],
    model: Annotated[str, typer.Option("--model", help="open_clip architecture (SkyScript: ViT-L-14).")] = "ViT-L-14",
    pretrained: Annotated[
        str, typer.Option("--pretrained", help="open_clip pretrained tag or a checkpoint file.")
    ] = "openai",
    device: Annotated[str, typer.Option("--device", help="auto, cuda, cuda:N or cpu.")] = "auto",
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Pairs per batch; 0 = 64 on CPU, probed on a GPU.")
    ] = 0,
    workers: Annotated[
        int, typer.Option("--workers", help="Decode/preprocess worker processes (0 = in this process).")
    ] = 4,
    save_embeddings: Annotated[
        bool,
        typer.Option("--save-embeddings", help="Also store L2-normalised image/text embeddings (float16) per shard."),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Re-score shards already scored (by any model).")
    ] = False,
) -> None:
    """Score every image-caption pair: CLIP cosine similarity -> OUT/scores/NNNNN.parquet.

    Resumable: shards already scored with the same model are skipped.
    """
    from training.scoring import ScoreConfig, score_dataset

    cfg = ScoreConfig(
        model=model,
        pretrained=pretrained,
        device=device,
        batch_size=batch_size,
        workers=workers,
        save_embeddings=save_embeddings,
        overwrite=overwrite,
    )
    from storage.remote import dataset_folder

    # s3://: shards and scores mirrored locally, new score files (markers last) uploaded back.
    with dataset_folder(out, pull=("shards", "scores"), push=("embeddings", "scores")) as folder:
        s = score_dataset(folder, cfg)
    typer.echo(
        f"{s.model}: scored {s.pairs:,} pairs in {s.shards_scored} shard(s) ({s.pairs_per_second:,.1f} pairs/s, "
        f"batch {s.batch_size}, model busy {s.model_busy:.0%}); {s.shards_skipped} shard(s) already scored"
    )
    if s.skipped_rows:
        err_console.print("skipped rows: " + ", ".join(f"{k} {v}" for k, v in sorted(s.skipped_rows.items())))


train_app = typer.Typer(help="Train models on a built dataset.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate CLIP checkpoints.", no_args_is_help=True)


def _report(result: dict, json_out: Path | None, title: str) -> None:
    """Results as JSON (stdout or --json FILE) plus a readable table on stderr."""
    import json

    from rich.table import Table

    from storage.atomic import publishing

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in result.items():
        if isinstance(v, float):
            table.add_row(k, f"{v:.4f}")
        elif isinstance(v, int | str):
            table.add_row(k, str(v))
    err_console.print(table)
    text = json.dumps(result, indent=1)
    if json_out is None:
        typer.echo(text)
    else:
        with publishing(json_out) as tmp:
            tmp.write_text(text, encoding="utf-8")
        err_console.print(f"results: {json_out}")


@train_app.command("skyclip")
@friendly_errors
def train_skyclip_command(
    data: Annotated[str, typer.Option("--data", help="Dataset folder (a build's --out, scored and filtered), or "
                                      "its s3://BUCKET/PREFIX.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for checkpoints, losses.jsonl, config.json.")],
    selection: Annotated[str, typer.Option("--selection", help="Selection to train on (top20/top30/top50).")] = "top30",
    caption: Annotated[str, typer.Option("--caption", help="Caption to train with: single or multi.")] = "single",
    model: Annotated[str, typer.Option("--model", help="open_clip architecture (SkyCLIP: ViT-B-32, ViT-L-14).")] = (
        "ViT-B-32"
    ),
    pretrained: Annotated[
        str, typer.Option("--pretrained", help="laion2b_s34b_b79k, openai, any open_clip tag, or a checkpoint file.")
    ] = "laion2b_s34b_b79k",
    epochs: Annotated[int, typer.Option("--epochs")] = 20,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Global batch (split across processes).")] = 512,
    lr: Annotated[float, typer.Option("--lr")] = 1e-5,
    wd: Annotated[float, typer.Option("--wd", help="AdamW weight decay.")] = 0.1,
    warmup: Annotated[int, typer.Option("--warmup", help="Warm-up steps (capped at a tenth of the run).")] = 1000,
    precision: Annotated[str, typer.Option("--precision", help="auto (amp on CUDA), amp, amp_bf16, fp32.")] = "auto",
    device: Annotated[str, typer.Option("--device", help="auto, cuda or cpu (torchrun sets the rank's GPU).")] = (
        "auto"
    ),
    workers: Annotated[int, typer.Option("--workers", help="Data loader processes per GPU.")] = 4,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    rotate: Annotated[bool, typer.Option("--rotate/--no-rotate", help="Random 90-degree rotations.")] = True,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint in --out.")] = False,
    log_every: Annotated[int, typer.Option("--log-every", help="Log loss every N steps.")] = 10,
) -> None:
    """Continual pre-training of CLIP on the kept pairs (SkyCLIP). Multi-GPU: torchrun --nproc_per_node N
    $(which skyscript) train skyclip ...
    """
    import logging

    from storage.remote import dataset_folder
    from training.skyclip.train import SkyClipConfig, train_skyclip

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    # s3://: the shards, selections and split mirrored into the local staging folder (read-only here).
    with dataset_folder(data, pull=("shards", "selections", "split.parquet"), push=()) as folder:
        cfg = SkyClipConfig(data=str(folder), out=str(out), selection=selection, caption=caption, model=model,
                            pretrained=pretrained, epochs=epochs, batch_size=batch_size, lr=lr, wd=wd, warmup=warmup,
                            precision=precision, device=device, workers=workers, seed=seed, rotate=rotate,
                            resume=resume, log_every=log_every)
        res = train_skyclip(cfg)
    for e in res["epochs"]:
        err_console.print(f"epoch {e['epoch']}: mean loss {e['mean_loss']:.4f} ({e['steps']} steps, {e['seconds']} s)")
    if res["checkpoints"]:
        typer.echo(res["checkpoints"][-1])


@eval_app.command("retrieval")
@friendly_errors
def eval_retrieval_command(
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="Checkpoint file or open_clip pretrained tag.")],
    data: Annotated[str, typer.Option("--data", help="Dataset folder (a build's --out), or its s3://BUCKET/PREFIX.")],
    split: Annotated[str, typer.Option("--split", help="test (from skyscript split), train, or all.")] = "test",
    model: Annotated[str | None, typer.Option("--model", help="Architecture (read from the checkpoint if saved).")] = (
        None
    ),
    caption: Annotated[str, typer.Option("--caption", help="single or multi.")] = "single",
    device: Annotated[str, typer.Option("--device")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size")] = 64,
    workers: Annotated[int, typer.Option("--workers")] = 2,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results JSON here.")] = None,
) -> None:
    """Image-to-text and text-to-image recall@1/5/10 and mean recall on a split of a built dataset."""
    from storage.remote import dataset_folder
    from training.evaluate.retrieval import RetrievalConfig, evaluate_retrieval

    with dataset_folder(data, pull=("shards", "split.parquet"), push=()) as folder:  # s3://: mirrored
        cfg = RetrievalConfig(data=str(folder), checkpoint=checkpoint, model=model, split=split, caption=caption,
                              device=device, batch_size=batch_size, workers=workers)
        result = evaluate_retrieval(cfg)
    _report(result, json_out, f"retrieval on {data} ({split})")


@eval_app.command("zeroshot")
@friendly_errors
def eval_zeroshot_command(
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="Checkpoint file or open_clip pretrained tag.")],
    dataset: Annotated[str, typer.Option("--dataset", help="EuroSAT, UCMerced, RESISC45, PatternNet, or a folder.")],
    model: Annotated[str | None, typer.Option("--model", help="Architecture (read from the checkpoint if saved).")] = (
        None
    ),
    root: Annotated[str, typer.Option("--root", help="Where torchgeo datasets were downloaded.")] = "data",
    device: Annotated[str, typer.Option("--device")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size")] = 64,
    workers: Annotated[int, typer.Option("--workers")] = 2,
    limit: Annotated[int, typer.Option("--limit", help="Evaluate at most N images (0 = all).")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results JSON here.")] = None,
) -> None:
    """Zero-shot scene classification (prompt templates) -> top-1 accuracy.

    Any open_clip checkpoint, the original CLIP, or a GRAFT checkpoint (its image encoder with the
    CLIP text encoder it was aligned to, as GRAFT evaluates).
    """
    from training.evaluate.zeroshot import ZeroShotConfig, evaluate_zeroshot
    from training.graft.zeroshot import is_graft_checkpoint, load_graft_bundle

    cfg = ZeroShotConfig(checkpoint=checkpoint, dataset=dataset, model=model, root=root, device=device,
                         batch_size=batch_size, workers=workers, limit=limit)
    bundle = load_graft_bundle(checkpoint, device=device) if is_graft_checkpoint(checkpoint) else None
    _report(evaluate_zeroshot(cfg, bundle=bundle), json_out, f"zero-shot on {dataset}")


def register(app: typer.Typer) -> None:
    """Add score, filter, export, split, train and eval to the ``skyscript`` app."""
    from storage.cli import export_command, filter_command, split_command

    app.command("score")(score_command)
    app.command("filter")(filter_command)
    app.command("export")(export_command)
    app.command("split")(split_command)
    app.add_typer(train_app, name="train")
    app.add_typer(eval_app, name="eval")
