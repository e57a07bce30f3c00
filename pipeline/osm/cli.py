"""CLI for OSM acquisition: ``skyscript osm``, ``skyscript plan cells|targeted``, ``skyscript tags count``."""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import Progress

from pipeline.cli_util import friendly_errors
from pipeline.errors import BadInputError, OsmSourceError
from pipeline.geo import BBox

if TYPE_CHECKING:
    from pipeline.osm.plan import Plan
    from pipeline.seams import OsmSource

console = Console(stderr=True, highlight=False)
plan_app = typer.Typer(
    help="Plan OSM acquisition: random land cells and targeted rare-tag queries.", no_args_is_help=True
)


def _check_out(path: Path) -> Path:
    """Fail early, with the path named, when an output cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInputError(f"cannot create the folder for --out {str(path)!r}: {exc.strerror}") from exc
    if path.is_dir() or not os.access(path.parent, os.W_OK):
        raise BadInputError(f"cannot write --out {str(path)!r}: not a writable file path")
    return path


def _progress() -> Progress:
    from pipeline.progress import progress_bar

    return progress_bar(console)


@friendly_errors
def osm_command(
    source: Annotated[str, typer.Option("--source", help="pbf:FILE, overpass:URL, overpass, or an OSM file path.")],
    out: Annotated[Path, typer.Option("--out", help="Objects table to write (objects.parquet).")],
    cells: Annotated[Path | None, typer.Option(help="Cell plan from `skyscript plan cells`.")] = None,
    targeted: Annotated[Path | None, typer.Option(help="Targeted plan from `skyscript plan targeted`.")] = None,
    bbox: Annotated[str | None, typer.Option(help="Only objects intersecting W,S,E,N (degrees).")] = None,
    tags: Annotated[str | None, typer.Option(help="Only objects with these tags: key=value,key2=*,...")] = None,
    index: Annotated[
        str, typer.Option(help="osmium node index for files (sparse_file_array,PATH for planets).")
    ] = "flex_mem",
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Overpass: do not read or write the response cache.")
    ] = False,
    slots: Annotated[int | None, typer.Option(help="Overpass: concurrent queries per endpoint, all processes.")] = None,
    attempts: Annotated[int | None, typer.Option(help="Overpass: tries per query before it is listed failed.")] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML config (osm: and osm.overpass: sections) over the default preset.")
    ] = None,
) -> None:
    """Acquire OSM objects into an objects table (one pass over a file for the whole plan).

    Objects in any --cells cell OR with a --targeted/--tags tag are kept; --bbox restricts all of it.
    With none of them a file source yields every object (Overpass refuses).
    """
    from pipeline.osm.acquire import acquire, count_queries
    from pipeline.osm.tags import parse_tag_specs
    from storage.objects_table import ObjectsWriter

    _check_out(out)
    plan = _make_plan(cells, targeted, BBox.parse(bbox) if bbox else None, parse_tag_specs(tags) if tags else [])
    src = _make_source(source, index, no_cache, slots, attempts, config)
    total = count_queries(src, plan)
    ok = failed = 0
    with _progress() as progress, ObjectsWriter(out) as writer:
        objects_task = progress.add_task("objects", total=None)
        query_task = progress.add_task("Overpass queries", total=total) if total is not None else None
        step = (lambda _q: progress.advance(query_task)) if query_task is not None else None
        for obj in acquire(src, plan, on_step=step):
            writer.write(obj)
            ok, failed = (ok + 1, failed) if obj.ok else (ok, failed + 1)
            progress.advance(objects_task)
    console.print(f"wrote {ok + failed} objects ({ok} ok, {failed} failed) to {out}")
    _report_failed_queries(src, out)


def _make_plan(cells: Path | None, targeted: Path | None, box: BBox | None, tag_specs: list) -> Plan:
    from pipeline.osm.cells import read_cells
    from pipeline.osm.plan import Plan, Target
    from pipeline.osm.targeted import read_targeted

    targets = list(read_targeted(targeted)) if targeted else []
    targets += [Target(k, v) for k, v in tag_specs]
    return Plan(cells=read_cells(cells) if cells else None, targets=tuple(targets), bbox=box)


def _make_source(
    spec: str, index: str, no_cache: bool, slots: int | None, attempts: int | None, config: Path | None = None
) -> OsmSource:
    from pipeline.config import load_config
    from pipeline.osm import make_osm_source

    osm_cfg = load_config(config).osm
    if spec.strip().startswith("overpass"):
        if (slots is not None and slots < 1) or (attempts is not None and attempts < 1):
            raise BadInputError("--slots and --attempts must be at least 1")
        cfg = osm_cfg.overpass
        cfg = cfg.replace(
            cache_dir=None if no_cache else cfg.cache_dir,
            slots_per_endpoint=slots or cfg.slots_per_endpoint,
            attempts=attempts or cfg.attempts,
        )
        return make_osm_source(spec, osm_cfg, overpass_config=cfg)
    if spec.lower().endswith(".parquet"):
        return make_osm_source(spec)
    return make_osm_source(spec, osm_cfg, index=index)


def _report_failed_queries(src: object, out: Path) -> None:
    failures = getattr(src, "failures", [])
    if not failures:
        return
    listing = out.with_name(out.name + ".failed_queries.txt")
    listing.write_text("\n\n".join(f"# {reason}\n{query}" for query, reason in failures) + "\n")
    raise OsmSourceError(
        f"{len(failures)} Overpass queries failed after retries (listed in {listing}); objects from the others "
        f"are in {out}. Re-run the same command later: answered queries come from the cache."
    )


@plan_app.command("cells")
@friendly_errors
def plan_cells_command(
    n: Annotated[int, typer.Option("--n", help="Number of distinct land cells.")],
    out: Annotated[Path, typer.Option("--out", help="cells.parquet to write.")],
    cell_deg: Annotated[float, typer.Option(help="Cell size in degrees.")] = 0.01,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same cells).")] = 0,
    bbox: Annotated[str | None, typer.Option(help="Restrict to W,S,E,N.")] = None,
    region: Annotated[str | None, typer.Option(help="Restrict to a polygon: GeoJSON file or WKT.")] = None,
) -> None:
    """Random land cells, uniform by area (global-land-mask), deterministic per seed."""
    from pipeline.osm.cells import sample_cells, write_cells

    if bbox and region:
        raise BadInputError("pass --bbox or --region, not both")
    _check_out(out)
    area = BBox.parse(bbox) if bbox else (_read_region(region) if region else None)
    with console.status(f"sampling {n} land cells"):
        plan = sample_cells(n, cell_deg, seed, area)
    write_cells(out, plan, seed)
    console.print(f"wrote {len(plan)} cells of {cell_deg}° to {out}")


def _read_region(text: str) -> object:
    import json

    import shapely
    from shapely.geometry import shape

    path = Path(text)
    try:
        if path.is_file():
            data = json.loads(path.read_text())
            if data.get("type") == "FeatureCollection":
                return shapely.union_all([shape(f["geometry"]) for f in data["features"]])
            return shape(data.get("geometry", data))
        return shapely.from_wkt(text)
    except (ValueError, KeyError, TypeError, AttributeError, shapely.errors.GEOSException) as exc:
        raise BadInputError(f"--region {text!r} is neither a GeoJSON file nor WKT: {exc}") from exc


@plan_app.command("targeted")
@friendly_errors
def plan_targeted_command(
    counts: Annotated[Path, typer.Option(help="Tag counts so far: counts.csv or objects.parquet.")],
    candidates: Annotated[Path, typer.Option(help="Candidate tags: CSV with 'tag' (+ 'groundable') or lines.")],
    out: Annotated[Path, typer.Option("--out", help="targeted.parquet to write.")],
    cells: Annotated[Path | None, typer.Option(help="The cell plan the counts came from (scales counts).")] = None,
    sampled_fraction: Annotated[float | None, typer.Option(help="Share of land the counts cover.")] = None,
    max_count: Annotated[int, typer.Option(help="Tags seen on fewer objects are rare.")] = 100,
    max_per_query: Annotated[int, typer.Option(help="Expected objects per query, at most.")] = 20_000,
    bbox: Annotated[str | None, typer.Option(help="Region W,S,E,N (default: the world).")] = None,
    keep_ocean: Annotated[bool, typer.Option("--keep-ocean", help="Also query tiles without land.")] = False,
) -> None:
    """Plan tiled global queries for rare candidate tags."""
    from pipeline.osm.cells import read_cells
    from pipeline.osm.tagstats import read_counts
    from pipeline.osm.targeted import (
        TargetedConfig,
        plan_targeted,
        read_candidates,
        sampled_land_fraction,
        write_targeted,
    )

    if max_count < 1 or max_per_query < 1:
        raise BadInputError("--max-count and --max-per-query must be positive")
    _check_out(out)
    if sampled_fraction is None:
        if cells is None:
            raise BadInputError("pass --cells (the cell plan behind the counts) or --sampled-fraction")
        plan = read_cells(cells)
        sampled_fraction = sampled_land_fraction(len(plan), plan.cell_deg)
    cfg = TargetedConfig(max_count=max_count, max_objects_per_query=max_per_query, keep_ocean=keep_ocean)
    with console.status("planning targeted queries"):
        rows = plan_targeted(
            read_counts(counts), read_candidates(candidates), sampled_fraction, BBox.parse(bbox) if bbox else None, cfg
        )
    write_targeted(out, rows)
    tags = len({r["tag"] for r in rows})
    console.print(f"wrote {len(rows)} queries for {tags} rare tags to {out}")


@friendly_errors
def tags_count_command(
    objects: Annotated[
        Path, typer.Argument(help="objects.parquet (from `skyscript osm` or a build) or an OSM file (.osm.pbf, ...).")
    ],
    out: Annotated[Path | None, typer.Option("--out", help="CSV to write (default: CSV on stdout).")] = None,
    ok_only: Annotated[bool, typer.Option("--ok-only", help="Count only objects with a usable geometry.")] = False,
) -> None:
    """Per-tag object counts (key=value and key=*) of an objects table or an OSM file.

    What counts as an object (the same as what `skyscript osm` and the build acquire): every tagged
    node and way, and multipolygon/boundary relations (their structural `type` tag is not counted);
    objects whose only tags are created_by, source, note or fixme are not objects, and other
    relation types (routes, turn restrictions, ...) have no footprint and are not counted. Failed
    objects (e.g. ways with missing nodes) are counted unless --ok-only.
    """
    from pipeline.osm.tagstats import count_table, write_counts

    if out is not None:
        _check_out(out)
    if not str(objects).lower().endswith(".parquet"):
        counts, n = _count_osm_file(objects, ok_only)
    else:
        counts, n = count_table(objects, ok_only=ok_only)
    if out is None:
        import csv

        w = csv.writer(sys.stdout)
        w.writerow(["tag", "key", "value", "count"])
        for (k, v), c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            w.writerow([f"{k}={v}", k, v, c])
        return
    rows = write_counts(out, counts)
    console.print(f"counted {n} objects: {rows} tags written to {out}")


def _count_osm_file(path: Path, ok_only: bool) -> tuple[Counter[tuple[str, str]], int]:
    """Count straight from an OSM file: one streaming pass, nothing written."""
    from collections import Counter

    from pipeline.osm import make_osm_source
    from pipeline.osm.tagstats import count_tags

    counts: Counter[tuple[str, str]] = Counter()
    n = 0
    with _progress() as progress:
        task = progress.add_task("objects", total=None)
        for obj in make_osm_source(str(path)).objects():
            if ok_only and not obj.ok:
                continue
            counts.update(count_tags([obj.tags]))
            n += 1
            if n % 10_000 == 0:
                progress.update(task, completed=n)
    return counts, n
