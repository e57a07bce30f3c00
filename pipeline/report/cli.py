"""``skyscript report OUT --out report.html``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli_util import err_console, friendly_errors
from pipeline.errors import BadInputError


@friendly_errors
def report_command(
    out_dir: Annotated[Path, typer.Argument(metavar="OUT", help="The --out folder of a build.")],
    html_out: Annotated[Path | None, typer.Option("--out", help="HTML file (default OUT/report.html).")] = None,
    examples: Annotated[int, typer.Option(help="Caption examples shown beside their chips.")] = 12,
    seed: Annotated[int, typer.Option(help="Seed of the example draw.")] = 0,
) -> None:
    """Write the dataset report: map, tag frequency, examples, similarity cuts, GSD, failures, config."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from pipeline.report.data import collect
    from pipeline.report.figures import coarse_land
    from pipeline.report.html import render
    from storage.atomic import publishing

    if examples < 0:
        raise BadInputError(f"--examples must be 0 or more, got {examples}")
    target = html_out or out_dir / "report.html"
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err_console,
                  transient=True) as progress:
        step = progress.add_task("reading shards", total=None)
        data = collect(out_dir, n_examples=examples, seed=seed)
        progress.update(step, description="world land mask (first time only: ~15 s)")
        land = coarse_land()
        progress.update(step, description="drawing charts")
        page = render(data, land)
    target.parent.mkdir(parents=True, exist_ok=True)
    with publishing(target) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    err_console.print(f"report: {data.n_ok} samples, {len(data.tag_counts)} tags → {target} "
                      f"({len(page) / 1e6:.1f} MB, self-contained)")
