"""The score and filter steps of ``build-skyscript``: thin wrappers over ``skyscript score``/``filter``.

The seam is the command line that issue 9 fixes (``skyscript score OUT --model M [--pretrained P]``
and ``skyscript filter OUT --top N``), not a Python module path, so the flow keeps working
however the scorer library is laid out. A failed step fails its task, which Prefect retries;
the scorer's own per-shard done markers make the retry resume instead of starting over.
"""

from __future__ import annotations

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
    """Run ``skyscript ARGS`` in this process (the flow run's own process); raise on failure.

    In-process rather than a child so a model registered with ``open_clip.add_model_config``
    is seen; a served deployment already runs each flow run in a process of its own.
    """
    import click
    import typer.main

    from pipeline.cli import app

    log("running: skyscript " + " ".join(args))
    try:
        typer.main.get_command(app).main(args=args, prog_name="skyscript", standalone_mode=False)
    except click.exceptions.Exit as exc:
        if exc.exit_code:
            raise RuntimeError(f"skyscript {args[0]} failed (exit {exc.exit_code}); see the messages above") from None
    except click.ClickException as exc:
        raise RuntimeError(f"skyscript {args[0]}: {exc.format_message()}") from None
