"""``skyscript build``: OSM objects + imagery → captioned webdataset shards."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    TaskID,
)

from pipeline.cli_util import friendly_errors
from pipeline.config import load_config
from pipeline.errors import BadInputError
from pipeline.executors import EXECUTORS_HELP, check_executor
from pipeline.geo import BBox
from pipeline.progress import progress_bar

if TYPE_CHECKING:
    from pipeline.build import BuildInputs
    from pipeline.config import BuildConfig

console = Console(stderr=True)



@friendly_errors
def build_command(
    out: Annotated[str, typer.Option("--out", help="Output folder (created; re-running resumes), or "
                                     "s3://BUCKET/PREFIX (endpoint, keys, region from the AWS_* variables).")],
    imagery: Annotated[list[str], typer.Option("--imagery", help="Imagery source: local:DIR, gee:PROJECT or "
                                               "stac:URL; repeat it to let the catalog choose per object.")],
    osm: Annotated[
        str | None,
        typer.Option("--osm", "--source", help="OSM input: FILE (.osm.pbf/.osm/.osm.bz2/.parquet), "
                     "pbf:FILE or overpass:URL."),
    ] = None,
    bbox: Annotated[str | None, typer.Option(help="Only objects inside W,S,E,N (degrees).")] = None,
    max_objects: Annotated[int | None, typer.Option(help="Seeded random subset of N objects.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default from config).")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config layered over the preset.")] = None,
    preset: Annotated[str, typer.Option(help="Config preset shipped with the package.")] = "default",
    tag_model: Annotated[
        str | None,
        typer.Option(help="Tag classifier folder for tags without a label (default: the built-in model, "
                     "trained once on first need; set caption.unknown_tags: drop to use labels only)."),
    ] = None,
    executor: Annotated[str, typer.Option(help=EXECUTORS_HELP)] = "local",
    overwrite: Annotated[bool, typer.Option(help="Delete earlier outputs in --out and start over.")] = False,
    prefect: Annotated[bool, typer.Option(help="Run as the Prefect flow build-skyscript.")] = False,
) -> None:
    """Build SkyScript-style image-text shards (resumable: finished shards are skipped)."""
    if osm is None:
        raise BadInputError("pass --osm FILE (an .osm.pbf/.osm/.osm.bz2 extract or objects.parquet)")
    if max_objects is not None and max_objects <= 0:
        raise BadInputError(f"--max-objects must be positive, got {max_objects}")
    box = BBox.parse(bbox) if bbox else None
    check_executor(executor)  # fail before any work is done (an absent Dask scheduler included)
    cfg = load_config(config, preset=preset, seed=seed, max_objects=max_objects)
    from pipeline.build import BuildInputs

    specs: str | tuple[str, ...] = imagery[0] if len(imagery) == 1 else tuple(imagery)  # one: as before
    inputs = BuildInputs(osm=osm, imagery=specs, out=str(out), bbox=box, tag_model=tag_model)
    if prefect:
        from flows.build import build_skyscript_flow

        summary = build_skyscript_flow(
            osm=osm, imagery=imagery, out=str(out), bbox=bbox, max_objects=max_objects, seed=seed,
            config=None if config is None else str(config), preset=preset, tag_model=tag_model,
            overwrite=overwrite, executor=executor,
        )
    else:
        summary = run_with_progress(inputs, cfg, overwrite=overwrite, executor=executor)
    console.print(
        f"[green]done[/]: {summary['written']} samples written, {summary['failed']} failed rows, "
        f"{summary['shards_done']}/{summary['shards_total']} shards in {out}"
    )
    if summary["errors"]:
        top = ", ".join(f"{k} ×{v}" for k, v in list(summary["errors"].items())[:5])
        console.print(f"failures by reason: {top}")
    if summary["written"] == 0 and summary["planned"]:
        console.print("[yellow]no sample was written[/]: check that the --imagery rasters cover the "
                      "--osm area (see the reasons above and shards/*.parquet error_message).")


def run_with_progress(inputs: BuildInputs, cfg: BuildConfig, *, overwrite: bool, executor: str) -> dict[str, Any]:
    """Run :func:`pipeline.build.build` under a rich progress bar (per object, or per shard on Dask)."""
    from pipeline.build import RunPlan, build

    with progress_bar(console) as progress:
        bar: dict[str, TaskID] = {}  # created once the plan is known, so errors before it show no empty bar

        def on_acquired(n: int) -> None:
            if "osm" not in bar:
                bar["osm"] = progress.add_task("reading OSM objects", total=None)
            progress.update(bar["osm"], completed=n)

        def on_plan(plan: RunPlan) -> None:
            total = sum(len(t.keys) for t in plan.tasks)
            done = total - sum(len(t.keys) for t in plan.pending)
            if "osm" in bar:
                progress.remove_task(bar["osm"])
            bar["id"] = progress.add_task("objects", total=total, completed=done)

        return build(
            inputs, cfg, overwrite=overwrite, executor=executor,
            log=lambda m: progress.console.print(m),
            on_object=lambda: progress.advance(bar["id"]), on_plan=on_plan, on_acquired=on_acquired,
            # Dask workers cannot tick per object across processes: advance per finished shard.
            on_shard=None if executor == "local" else lambda st: progress.advance(bar["id"], st["count"]),
        )
