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
    out: Annotated[Path, typer.Argument(help="Dataset folder (a skyscript build's --out).")],
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
    s = score_dataset(out, cfg)
    typer.echo(
        f"{s.model}: scored {s.pairs:,} pairs in {s.shards_scored} shard(s) ({s.pairs_per_second:,.1f} pairs/s, "
        f"batch {s.batch_size}); {s.shards_skipped} shard(s) already scored"
    )
    if s.skipped_rows:
        err_console.print("skipped rows: " + ", ".join(f"{k} {v}" for k, v in sorted(s.skipped_rows.items())))


train_app = typer.Typer(help="Train models on a built dataset.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate CLIP checkpoints.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add score, filter, export, split, train and eval to the ``skyscript`` app."""
    from storage.cli import export_command, filter_command, split_command

    app.command("score")(score_command)
    app.command("filter")(filter_command)
    app.command("export")(export_command)
    app.command("split")(split_command)
    app.add_typer(train_app, name="train")
    app.add_typer(eval_app, name="eval")
