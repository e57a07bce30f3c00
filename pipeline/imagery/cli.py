"""``skyscript imagery plan``: the per-object collection choice and chip grids, without pixels."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipeline.cli_util import friendly_errors
from pipeline.errors import BadInputError

imagery_app = typer.Typer(help="Imagery: the collection catalog and per-object chip plans.", no_args_is_help=True)
console = Console(stderr=True)


@imagery_app.command("plan")
@friendly_errors
def plan_command(
    objects: Annotated[str, typer.Argument(help="objects.parquet, an OSM file (.osm.pbf/.osm/.osm.bz2) or pbf:FILE")],
    imagery: Annotated[list[str], typer.Option("--imagery", help="Repeatable: local:DIR, gee:PROJECT, stac:URL.")],
    out: Annotated[Path, typer.Option("--out", help="Plan parquet to write.")],
    catalog: Annotated[Path | None, typer.Option(help="Catalog YAML layered over the shipped one.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config layered over the preset.")] = None,
    preset: Annotated[str, typer.Option(help="Config preset shipped with the package.")] = "default",
    seed: Annotated[int | None, typer.Option(help="Random seed (default from config).")] = None,
    date: Annotated[str | None, typer.Option(help="Target date YYYY-MM-DD (closest-to-date picks).")] = None,
    tag_model: Annotated[str | None, typer.Option(help="Tag classifier folder or 'auto' (default: labels only).")]
    = None,
    max_objects: Annotated[int | None, typer.Option(help="Only the first N objects.")] = None,
) -> None:
    """Plan chips per object (collection by max GSD, size and coverage); no pixels are fetched."""
    import dataclasses
    import datetime as dt
    import itertools

    from pipeline.config import load_config
    from pipeline.imagery.plan import plan_rows, write_plan
    from pipeline.imagery.router import ImageryRouter
    from tag_classifier.visibility import load_visibility

    if date is not None:
        try:
            dt.date.fromisoformat(date)
        except ValueError as exc:
            raise BadInputError(f"--date must be YYYY-MM-DD, got {date!r}") from exc
    cfg = load_config(config, preset=preset, seed=seed)
    if catalog is not None:
        cfg = cfg.replace(imagery=dataclasses.replace(cfg.imagery, catalog=str(catalog)))
    router = ImageryRouter(imagery, cfg.imagery, connect=False)
    vis = load_visibility(tag_model)
    objs = list(itertools.islice(_objects(objects, cfg), max_objects))
    rows = plan_rows(objs, router, vis, cfg, date=date)
    write_plan(out, rows)
    status = Counter(r["status"] for r in rows)
    by_col = Counter(r["collection"] for r in rows if r["status"] == "ok")
    console.print(f"[green]planned[/] {status.get('ok', 0)} chips, {status.get('failed', 0)} failed rows "
                  f"from {len(objs)} objects -> {out}")
    if by_col:
        console.print("by collection: " + ", ".join(f"{k} ×{v}" for k, v in by_col.most_common()))


def _objects(spec: str, cfg: object):  # type: ignore[no-untyped-def]
    from pipeline.osm import make_osm_source
    from storage.objects_table import iter_objects

    if spec.endswith(".parquet"):
        if not Path(spec).is_file():
            raise BadInputError(f"objects table not found: {spec!r}")
        return iter_objects(spec)
    return make_osm_source(spec, cfg.osm).objects(None)  # type: ignore[attr-defined]
