"""Flows for the steps after a build: scoring + filtering, SkyCLIP training, the tag classifier.

Thin wrappers over the commands (``skyscript score/filter``, ``skyscript train skyclip``,
``skyscript tags train``), so a deployment runs exactly what the command line runs. Parameters
are checked before any work starts; options a flow does not name go in ``options``
(``{"epochs": 5, "batch-size": 256}`` → ``--epochs 5 --batch-size 256``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from flows import scoring
from flows.params import TOP_CHOICES, ParameterError, _tops


def _folder(name: str, value: str, need: str | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ParameterError(f"parameter {name}: is required (got {value!r})")
    if need is not None and not (Path(value) / need).exists():
        raise ParameterError(f"parameter {name}: {value!r} has no {need}; pass the --out folder of a build")
    return value.strip()


def option_args(options: dict[str, Any] | None) -> list[str]:
    """``{"epochs": 5, "rotate": False}`` → ``["--epochs", "5", "--no-rotate"]``."""
    args: list[str] = []
    for key, value in (options or {}).items():
        flag = "--" + str(key).replace("_", "-").lstrip("-")
        if value is True:
            args.append(flag)
        elif value is False:
            args.append("--no-" + flag[2:])
        elif value is not None:
            args += [flag, str(value)]
    return args


@task(name="command", task_run_name="skyscript-{args[0]}", retries=1, retry_delay_seconds=10)
def command_task(args: list[str]) -> str:
    scoring.run_step(args, get_run_logger().info)
    return " ".join(args)


@flow(name="score-skyscript", log_prints=True)
def score_flow(out: str, score_model: str = "ViT-L-14:openai", top: int | list[int] = list(TOP_CHOICES)) -> list[str]:  # noqa: B006
    """Score a built dataset, then keep each top fraction (``skyscript score`` + ``filter``)."""
    folder = _folder("out", out, need="run.json")
    tops = _tops(top)
    if not isinstance(score_model, str) or not score_model.strip():
        raise ParameterError(f"parameter score_model: name an open_clip model, got {score_model!r}")
    command_task(scoring.score_args(folder, score_model.strip()))
    return [command_task(scoring.filter_args(folder, t)) for t in tops]


@flow(name="train-skyclip", log_prints=True)
def train_skyclip_flow(
    data: str,
    out: str,
    selection: str = "top30",
    caption: str = "single",
    model: str = "ViT-B-32",
    pretrained: str = "laion2b_s34b_b79k",
    options: dict[str, Any] | None = None,
) -> str:
    """Continual pre-training of CLIP on a selection (``skyscript train skyclip``)."""
    data_dir = _folder("data", data, need="shards")
    if caption not in ("single", "multi"):
        raise ParameterError(f"parameter caption: single or multi, got {caption!r}")
    args = ["train", "skyclip", "--data", data_dir, "--out", _folder("out", out), "--selection", selection,
            "--caption", caption, "--model", model, "--pretrained", pretrained, *option_args(options)]
    return command_task(args)


@flow(name="train-tag-classifier", log_prints=True)
def train_tags_flow(out: str, embedder: str = "minilm", options: dict[str, Any] | None = None) -> str:
    """Train the two-stage tag visibility classifier (``skyscript tags train``)."""
    return command_task(["tags", "train", "--out", _folder("out", out), "--embedder", embedder,
                         *option_args(options)])
