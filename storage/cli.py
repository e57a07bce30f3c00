"""``skyscript filter | export | split``: selections, exports and splits over a build's scores.

Only pyarrow/numpy are imported on these paths (``filter`` must start in a fraction of a second
even for millions of rows); the export and split modules are imported inside their commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli_util import err_console, friendly_errors


@friendly_errors
def filter_command(
    out: Annotated[str, typer.Argument(help="Dataset folder (a skyscript build's --out, already scored), or its "
                                       "s3://BUCKET/PREFIX.")],
    top: Annotated[int, typer.Option("--top", help="Percent of samples to keep, 1-100 (SkyScript: 20, 30 or 50).")],
    by: Annotated[str, typer.Option("--by", help="Which score ranks the samples: single or multi caption.")] = "single",
    reshard: Annotated[
        Path | None, typer.Option("--reshard", help="Also write a dataset folder of only the kept samples.")
    ] = None,
) -> None:
    """Keep the top N % of scored samples by one global threshold: OUT/selections/topNN.parquet.

    Exactly round(N x total / 100) samples are kept (halves round up); ties at the threshold go to
    the smaller key. Re-run with another --top without re-scoring.
    """
    from storage.remote import dataset_folder, is_remote
    from storage.selection import FilterConfig, filter_scores, read_selection
    from storage.selection import reshard as do_reshard

    cfg = FilterConfig(top=top, by=by)
    # s3://: the done markers and scores (whole shards only to reshard) mirrored; the selection uploaded.
    pull = ("shards", "scores") if reshard is not None else ("shards/*_stats.json", "scores")
    with dataset_folder(out, pull=pull, push=("selections",)) as folder:
        res = filter_scores(folder, cfg)
        if reshard is not None:
            totals = do_reshard(folder, read_selection(folder, cfg.name), reshard)
    thr = "none" if res.threshold is None else f"{res.threshold:.4f}"
    where = f"{out.rstrip('/')}/selections/{res.path.name}" if is_remote(out) else res.path
    typer.echo(f"{where}: kept {res.kept:,} of {res.total:,} samples (score_{by} >= {thr})")
    unscored = res.summary["unscored_shards"]
    if unscored:
        err_console.print(
            f"warning: {len(unscored)} finished shard(s) have no scores and were left out "
            f"(e.g. {unscored[:3]}); run skyscript score {out}"
        )
    if res.summary["rows_without_score"]:
        n = res.summary["rows_without_score"]
        err_console.print(f"note: {n:,} scored row(s) had no score_{by} and were left out")
    if reshard is not None:
        typer.echo(f"{reshard}/shards: {totals['samples']:,} samples in {totals['shards']} shard(s)")


@friendly_errors
def export_command(
    out: Annotated[str, typer.Argument(help="Dataset folder (a skyscript build's --out), or its s3://BUCKET/PREFIX.")],
    selection: Annotated[str, typer.Option("--selection", help="Selection name (top30) or a selection parquet file.")],
    dest: Annotated[Path, typer.Option("--out", help="Folder to write the CSV(s) and image files into.")],
    fmt: Annotated[str, typer.Option("--format", help="Export format: csv (the released SkyScript layout).")] = "csv",
) -> None:
    """Write the SkyScript CSV layout (filepath, title, title_multi_objects, similarity_<model>) + images.

    Loadable by open_clip (--dataset-type csv --csv-img-key filepath --csv-caption-key title, run
    from DIR) and by torchgeo's SkyScript dataset (root=DIR). With a split (skyscript split), one
    CSV per split.
    """
    from storage.export import export_csv
    from storage.remote import dataset_folder

    if fmt != "csv":
        from pipeline.errors import BadInputError

        raise BadInputError(f"--format {fmt!r}: only csv is supported (shards are already webdataset)")
    with dataset_folder(out, pull=("shards", "selections", "scores", "split.parquet"), push=()) as folder:
        res = export_csv(folder, selection, dest)
    for split, (path, n) in res.items():
        typer.echo(f"{split}: {n:,} rows -> {path}")


@friendly_errors
def split_command(
    out: Annotated[str, typer.Argument(help="Dataset folder (a skyscript build's --out), or its s3://BUCKET/PREFIX.")],
    test_frac: Annotated[float, typer.Option("--test-frac", help="Fraction of samples in the test split.")] = 0.05,
    block_deg: Annotated[float, typer.Option("--block-deg", help="Block size in degrees (~2 km at 0.02).")] = 0.02,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the block draw (same seed, same split).")] = 0,
) -> None:
    """Draw a test split by spatial blocks: OUT/split.parquet (key, shard, split, block).

    Whole blocks go to test, so test chips are not neighbours of training chips; training chips
    whose footprint reaches into a test block are marked 'buffer' and used by neither.
    """
    from storage.remote import dataset_folder, is_remote
    from storage.split import SplitConfig, make_split

    # s3://: the done markers and shard tables mirrored; split.parquet/.json uploaded back.
    with dataset_folder(out, pull=("shards/*_stats.json", "shards/*.parquet"),
                        push=("split.parquet", "split.json")) as folder:
        res = make_split(folder, SplitConfig(test_frac=test_frac, block_deg=block_deg, seed=seed))
    where = f"{out.rstrip('/')}/split.parquet" if is_remote(out) else res["path"]
    typer.echo(
        f"{where}: train {res['train']:,}, test {res['test']:,}, buffer {res['buffer']:,} "
        f"({res['test_blocks']} of {res['blocks']} blocks in test)"
    )
