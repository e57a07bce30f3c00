"""The score and filter steps of ``build-skyscript``: thin wrappers over ``skyscript score``/``filter``.

The seam is the command line that issue 9 fixes (``skyscript score OUT --model M [--pretrained P]``
and ``skyscript filter OUT --top N``), not a Python module path, so the flow keeps working
however the scorer library is laid out. Each step runs in a child process: a scorer that
crashes (or is killed for memory) fails the task, which Prefect retries, and the scorer's
own per-shard done markers make the retry resume instead of starting over.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

STEP_COMMANDS = ("score", "filter")


def registered_commands() -> set[str]:
    import typer.main

    from pipeline.cli import app

    group = typer.main.get_command(app)
    return set(getattr(group, "commands", {}))


def scoring_available() -> str | None:
    """None when ``skyscript score`` and ``filter`` exist in this install, else why not."""
    missing = [c for c in STEP_COMMANDS if c not in registered_commands()]
    if missing:
        return f"this install has no `skyscript {'`/`'.join(missing)}` command, so it cannot score"
    return None


def split_model(spec: str) -> tuple[str, str | None]:
    """``ViT-L-14`` or ``ViT-L-14:openai`` / ``ViT-B-32:/ckpt.pt`` → (model, pretrained)."""
    model, sep, pretrained = spec.partition(":")
    return model, (pretrained if sep and pretrained else None)


def score_args(out: str, score_model: str) -> list[str]:
    model, pretrained = split_model(score_model)
    args = ["score", out, "--model", model]
    if pretrained:
        args += ["--pretrained", pretrained]
    return args


def filter_args(out: str, top: int) -> list[str]:
    return ["filter", out, "--top", str(top)]


def run_step(args: list[str], log: Callable[[str], None]) -> None:
    """Run ``skyscript ARGS`` in a child process; its output goes to ``log``; raise on failure."""
    cmd = [sys.executable, "-m", "pipeline.cli", *args]
    log("running: skyscript " + " ".join(args))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        line = line.rstrip()
        if line:
            log(line)
            tail = [*tail[-19:], line]
    if proc.wait() != 0:
        raise RuntimeError(f"skyscript {args[0]} failed (exit {proc.returncode}): {' | '.join(tail[-3:])}")
