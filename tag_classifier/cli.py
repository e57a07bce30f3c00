"""CLI for the tag classifier: ``skyscript tags train|eval|predict``.

Heavy libraries (torch, sentence-transformers, scikit-learn) are imported inside the commands.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.cli_util import err_console, friendly_errors

tags_app = typer.Typer(help="Which OSM tags are visible from above, and at what GSD.", no_args_is_help=True)
out_console = Console(highlight=False)

EmbedderOpt = Annotated[
    str,
    typer.Option(
        "--embedder",
        help="minilm (offline, default), clip (open_clip ViT-L/14 openai) or open_clip:MODEL:PRETRAINED "
        "(PRETRAINED: a tag, a local checkpoint file, or none).",
    ),
]
LabelsOpt = Annotated[
    Path | None, typer.Option("--labels", help="Labels CSV (default: the shipped tag_classifier/data/tag_labels.csv).")
]
CacheOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache", help="Embedding cache file (default: $SKYSCRIPT_CACHE or ~/.cache/skyscript)/embeddings.sqlite."
    ),
]


@contextmanager
def _spinner(first: str) -> Iterator[Any]:
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err_console) as prog:
        task = prog.add_task(first, total=None)
        yield lambda msg: prog.update(task, description=msg)


def _stage_tables(m: dict[str, Any], title: str) -> list[Table]:
    s1, s2 = m["stage1"], m["stage2"]
    t1 = Table(title=f"{title}: stage 1 (groundable), n={s1['n']}")
    for c in ("accuracy", "F1", "precision", "recall"):
        t1.add_column(c, justify="right")
    t1.add_row(*(f"{s1[k]:.3f}" for k in ("accuracy", "f1", "precision", "recall")))
    c1 = Table(title="stage 1 confusion (rows: true, cols: predicted)")
    c1.add_column("")
    for lab in s1["confusion_matrix"]["labels"]:
        c1.add_column(lab, justify="right")
    for lab, row in zip(s1["confusion_matrix"]["labels"], s1["confusion_matrix"]["rows_true_cols_pred"], strict=True):
        c1.add_row(lab, *map(str, row))
    t2 = Table(title=f"{title}: stage 2 (max GSD class, groundable tags), n={s2['n']}")
    for c in ("exact accuracy", "within one class", "macro F1"):
        t2.add_column(c, justify="right")
    t2.add_row(*(f"{s2[k]:.3f}" for k in ("exact_accuracy", "within_one_class_accuracy", "macro_f1")))
    c2 = Table(title="stage 2 confusion, GSD m/px (rows: true, cols: predicted)")
    c2.add_column("")
    for lab in s2["confusion_matrix"]["labels"]:
        c2.add_column(lab, justify="right")
    for lab, row in zip(s2["confusion_matrix"]["labels"], s2["confusion_matrix"]["rows_true_cols_pred"], strict=True):
        c2.add_row(lab, *map(str, row))
    return [t1, c1, t2, c2]


@tags_app.command("train")
@friendly_errors
def train_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for model.npz and model.json.")],
    embedder: EmbedderOpt = "minilm",
    labels: LabelsOpt = None,
    cache: CacheOpt = None,
    cv: Annotated[bool, typer.Option("--cv/--no-cv", help="Also run 5-fold CV and save its metrics.")] = True,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    kernel: Annotated[
        str,
        typer.Option("--kernel", help="rbf (Nystroem RBF features, default) or linear (the embeddings as they are)."),
    ] = "rbf",
) -> None:
    """Train the two-stage model on the labels and save it with its embedder, label hash and metrics."""
    from tag_classifier.labels import load_labels
    from tag_classifier.model import cross_validate, train

    labs = load_labels(labels)
    t0 = time.perf_counter()
    with _spinner("loading the embedder") as say:
        model = train(labs, embedder, cache, progress=say, seed=seed, kernel=kernel)
        if cv:
            model.meta["metrics"]["cv"] = cross_validate(
                labs, embedder, 5, cache, progress=lambda m: say(f"5-fold CV: {m}"), seed=seed, kernel=kernel
            )
    model.meta["train_seconds"] = round(time.perf_counter() - t0, 1)
    model.save(out)
    msg = (
        f"saved tag model to {out} ({len(labs)} labels, embedder {model.embedder_id}, "
        f"C={model.stage1.C:g}/{model.stage2.C:g})"
    )
    if cv:
        m = model.meta["metrics"]["cv"]
        msg += (
            f"; 5-fold CV stage-1 accuracy {m['stage1']['accuracy']:.3f}, "
            f"stage-2 within-one-class {m['stage2']['within_one_class_accuracy']:.3f}"
        )
    err_console.print(msg, soft_wrap=True)


@tags_app.command("eval")
@friendly_errors
def eval_command(
    model_dir: Annotated[Path, typer.Argument(help="A folder made by skyscript tags train.")],
    folds: Annotated[int, typer.Option("--folds", min=2, max=20)] = 5,
    labels: LabelsOpt = None,
    cache: CacheOpt = None,
    by_family: Annotated[
        bool, typer.Option("--by-family/--no-by-family", help="Also CV with whole key families held out.")
    ] = True,
) -> None:
    """K-fold cross-validation of the model's recipe on the labels; writes eval.json into the folder."""
    from tag_classifier.labels import load_labels
    from tag_classifier.model import cross_validate, load_model, write_json

    labs = load_labels(labels)
    model = load_model(model_dir, labels=labs)
    kernel = str(model.meta.get("kernel", "linear"))  # CV re-runs the saved model's recipe
    seed = int(model.meta.get("seed", 0))
    result: dict[str, Any] = {"model_dir": str(model_dir), "embedder_id": model.embedder_id, "kernel": kernel}
    with _spinner("loading the embedder") as say:
        result["cv"] = cross_validate(
            labs, model.embedder_name, folds, cache, progress=lambda m: say(f"CV: {m}"), seed=seed, kernel=kernel
        )
        if by_family:
            result["cv_by_family"] = cross_validate(
                labs,
                model.embedder_name,
                folds,
                cache,
                group_by_family=True,
                progress=lambda m: say(f"CV by family: {m}"),
                seed=seed,
                kernel=kernel,
            )
    write_json(Path(model_dir) / "eval.json", result)
    for t in _stage_tables(result["cv"], f"{folds}-fold CV"):
        out_console.print(t)
    if by_family:
        m = result["cv_by_family"]
        out_console.print(
            f"{folds}-fold CV, key families held out: stage-1 accuracy {m['stage1']['accuracy']:.3f}, "
            f"F1 {m['stage1']['f1']:.3f}; stage-2 exact {m['stage2']['exact_accuracy']:.3f}, "
            f"within one class {m['stage2']['within_one_class_accuracy']:.3f}"
        )
    out_console.print(f"written {Path(model_dir) / 'eval.json'}")


@tags_app.command("predict")
@friendly_errors
def predict_command(
    model_dir: Annotated[Path, typer.Argument(help="A folder made by skyscript tags train.")],
    in_path: Annotated[Path, typer.Option("--in", help="CSV with a 'tag' column of key=value.")],
    out_path: Annotated[Path, typer.Option("--out", help="CSV: tag, groundable, p_groundable, max_gsd.")],
    labels: LabelsOpt = None,
    cache: CacheOpt = None,
) -> None:
    """Predict visibility for tags: the labels where a tag is labelled, the model elsewhere."""
    from tag_classifier.labels import load_labels
    from tag_classifier.model import load_model
    from tag_classifier.predict import predict_tags, read_tags_csv, write_predictions

    rows = read_tags_csv(in_path)
    labs = load_labels(labels)
    model = load_model(model_dir, labels=labs, cache_path=cache)
    pairs = [(k, v) for _t, k, v in rows]
    n_unlabelled = len({p for p in pairs if labs.lookup(*p) is None})
    t0 = time.perf_counter()
    cols = (SpinnerColumn(), TextColumn("model predictions"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*cols, console=err_console) as prog:
        task = prog.add_task("predict", total=n_unlabelled)
        preds = predict_tags(labs, model, pairs, progress=lambda n: prog.advance(task, n))
    dt = time.perf_counter() - t0
    write_predictions(out_path, preds)
    n_yes = sum(p.groundable for p in preds)
    err_console.print(
        f"wrote {out_path}: {len(preds)} tags ({len(preds) - n_unlabelled} from labels, {n_unlabelled} distinct by the "
        f"model), {n_yes} groundable; {len(preds) / max(dt, 1e-9):.0f} tags/s",
        soft_wrap=True,
    )
