"""``skyscript graft plan|photos`` and ``skyscript build-graft`` (GRAFT-style ground–satellite pairs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from pipeline.cli_util import friendly_errors

console = Console(stderr=True)
graft_app = typer.Typer(help="GRAFT-style ground photo ↔ satellite tile datasets.", no_args_is_help=True)

PhotosOpt = Annotated[str, typer.Option("--photos", help="Photo table (CSV/parquet), flickr:W,S,E,N or "
                                        "flickr:LAT,LON,RADIUS_KM (key from FLICKR_API_KEY).")]
IdCol = Annotated[str | None, typer.Option("--id-col", help="Photo id column (default: id|photo_id|img_id).")]
LatCol = Annotated[str | None, typer.Option("--lat-col", help="Latitude column (default: lat|latitude).")]
LonCol = Annotated[str | None, typer.Option("--lon-col", help="Longitude column (default: lon|lng|longitude).")]
DateCol = Annotated[str | None, typer.Option("--date-col", help="Date column (taken|datetaken|date|captured_at; "
                                             "epoch ms, epoch s or ISO).")]
PathCol = Annotated[str | None, typer.Option("--path-col", help="Image file column (path|image_path|file...).")]
UrlCol = Annotated[str | None, typer.Option("--url-col", help="Image URL column (default: url|image_url|url_z...).")]
IndoorCol = Annotated[str | None, typer.Option("--indoor-col", help="Indoor probability column.")]
MaxIndoor = Annotated[float | None, typer.Option("--max-indoor", help="Drop photos more likely indoors than this.")]
PhotoDir = Annotated[str | None, typer.Option("--photo-dir", help="Folder holding the images (by path or by id).")]
TakenFrom = Annotated[str | None, typer.Option("--taken-from", help="Flickr: earliest taken date (YYYY-MM-DD).")]
TakenTo = Annotated[str | None, typer.Option("--taken-to", help="Flickr: latest taken date (YYYY-MM-DD).")]
Endpoint = Annotated[str | None, typer.Option("--flickr-endpoint", envvar="SKYSCRIPT_FLICKR_ENDPOINT",
                                              help="Flickr REST endpoint (for proxies/tests).")]
FlickrInterval = Annotated[float, typer.Option("--flickr-interval", help="Seconds between Flickr calls.")]


def _source(photos: str, id_col: str | None, lat_col: str | None, lon_col: str | None, date_col: str | None,
            path_col: str | None, url_col: str | None, indoor_col: str | None, max_indoor: float | None,
            photo_dir: str | None, taken_from: str | None, taken_to: str | None, endpoint: str | None,
            interval: float) -> Any:
    from pipeline.graft.photos import ColumnSpec
    from pipeline.graft.sources import make_photo_source

    cols = ColumnSpec(id_col, lat_col, lon_col, date_col, path_col, url_col, indoor_col, photo_dir, max_indoor)
    flickr: dict[str, Any] = {}
    if photos.lower().startswith("flickr:"):
        flickr = {"min_taken": taken_from, "max_taken": taken_to, "endpoint": endpoint, "min_interval": interval}
    return make_photo_source(photos, cols, **flickr)


@graft_app.command("plan")
@friendly_errors
def plan_command(
    photos: PhotosOpt,
    out: Annotated[Path, typer.Option("--out", help="Folder for tiles.parquet, photos.parquet and stats.")],
    gsd: Annotated[float, typer.Option("--gsd", help="Tile ground sampling distance, metres/pixel.")] = 1.0,
    tile_px: Annotated[int, typer.Option("--tile-px", help="Tile width and height in pixels.")] = 224,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the greedy order and the cap sample.")] = 0,
    max_per_tile: Annotated[int, typer.Option("--max-per-tile", help="At most this many photos per tile.")] = 25,
    test_fraction: Annotated[float, typer.Option(help="Share of spatial blocks in the test split.")] = 0.05,
    split_block_deg: Annotated[float, typer.Option(help="Spatial block size of the split, degrees.")] = 0.1,
    id_col: IdCol = None, lat_col: LatCol = None, lon_col: LonCol = None, date_col: DateCol = None,
    path_col: PathCol = None, url_col: UrlCol = None, indoor_col: IndoorCol = None, max_indoor: MaxIndoor = None,
    photo_dir: PhotoDir = None, taken_from: TakenFrom = None, taken_to: TakenTo = None,
    flickr_endpoint: Endpoint = None, flickr_interval: FlickrInterval = 1.0,
) -> None:
    """Group geotagged photos into satellite tiles (10° cell × quarter groups, UTM squares, ≤25 photos)."""
    from pipeline.graft.plan import write_plan
    from pipeline.graft.tiling import TilingConfig, plan_tiles

    cfg = TilingConfig(gsd=gsd, tile_px=tile_px, seed=seed, max_per_tile=max_per_tile,
                       test_fraction=test_fraction, split_block_deg=split_block_deg)
    src = _source(photos, id_col, lat_col, lon_col, date_col, path_col, url_col, indoor_col, max_indoor,
                  photo_dir, taken_from, taken_to, flickr_endpoint, flickr_interval)
    with console.status("reading photos"):
        table = src.load()
    from pipeline.progress import progress_bar

    with progress_bar(console, transient=True) as bar:
        job = bar.add_task("tiling photos", total=len(table.photos))
        plan = plan_tiles(table.photos, cfg, on_group=lambda n: bar.advance(job, n))
    stats = write_plan(out, plan, table, cfg, src.describe())
    rej = stats["input"]["rejected"]
    console.print(
        f"[green]planned[/] {stats['tiles']:,} tiles holding {stats['photos_tiled']:,} of "
        f"{stats['input']['rows_in']:,} "
        f"photos ({stats['over_cap']:,} over the cap; rejected: {rej or 'none'}) → {out}"
    )


@graft_app.command("photos")
@friendly_errors
def photos_command(
    photos: PhotosOpt,
    out: Annotated[Path, typer.Option("--out", help="Parquet file of validated photos.")],
    id_col: IdCol = None, lat_col: LatCol = None, lon_col: LonCol = None, date_col: DateCol = None,
    path_col: PathCol = None, url_col: UrlCol = None, indoor_col: IndoorCol = None, max_indoor: MaxIndoor = None,
    photo_dir: PhotoDir = None, taken_from: TakenFrom = None, taken_to: TakenTo = None,
    flickr_endpoint: Endpoint = None, flickr_interval: FlickrInterval = 1.0,
) -> None:
    """Fetch (Flickr) or normalise (table) ground photos into one parquet table."""
    from dataclasses import asdict

    import pyarrow as pa

    from storage.atomic import write_parquet

    src = _source(photos, id_col, lat_col, lon_col, date_col, path_col, url_col, indoor_col, max_indoor,
                  photo_dir, taken_from, taken_to, flickr_endpoint, flickr_interval)
    with console.status("reading photos"):
        table = src.load()
    n = write_parquet(pa.Table.from_pylist([asdict(p) for p in table.photos]), out)
    console.print(f"[green]wrote[/] {n:,} photos to {out}; {table.counts()}")


@friendly_errors
def build_graft_command(
    photos: PhotosOpt,
    imagery: Annotated[str, typer.Option("--imagery", help="Imagery source, e.g. local:DIR, stac:URL, gee:PROJECT.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (created; re-running resumes).")],
    collection: Annotated[str, typer.Option("--collection", help="Imagery collection id (NAIP: USDA/NAIP/DOQQ or "
                                            "planetary-computer/naip; Sentinel-2: COPERNICUS/S2_SR_HARMONIZED, "
                                            "earth-search/sentinel-2-l2a...).")] = "naip",
    pick: Annotated[str, typer.Option("--pick", help="auto | most-recent (NAIP) | closest-to-date (Sentinel-2: "
                                      "clearest scene nearest the tile date).")] = "auto",
    gsd: Annotated[float | None, typer.Option("--gsd", help="Tile GSD in metres (default: 10 for Sentinel-2, "
                                              "else 1).")] = None,
    tile_px: Annotated[int, typer.Option("--tile-px", help="Tile size in pixels (fetched at 2x).")] = 224,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    max_per_tile: Annotated[int, typer.Option("--max-per-tile")] = 25,
    test_fraction: Annotated[float, typer.Option(help="Share of spatial blocks in the test split.")] = 0.05,
    split_block_deg: Annotated[float, typer.Option(help="Spatial block size of the split, degrees.")] = 0.1,
    metadata_only: Annotated[bool, typer.Option("--metadata-only", help="Keep photo ids and offsets only; fetch "
                                                "no photo pixels.")] = False,
    shard_size: Annotated[int, typer.Option("--shard-size", help="Tiles per shard.")] = 64,
    executor: Annotated[str, typer.Option(help="local | dask-local[:N] | dask:tcp://HOST:PORT")] = "local",
    overwrite: Annotated[bool, typer.Option(help="Delete earlier outputs in --out and start over.")] = False,
    prefect: Annotated[bool, typer.Option(help="Run as the Prefect flow build-graft.")] = False,
    id_col: IdCol = None, lat_col: LatCol = None, lon_col: LonCol = None, date_col: DateCol = None,
    path_col: PathCol = None, url_col: UrlCol = None, indoor_col: IndoorCol = None, max_indoor: MaxIndoor = None,
    photo_dir: PhotoDir = None, taken_from: TakenFrom = None, taken_to: TakenTo = None,
    flickr_endpoint: Endpoint = None, flickr_interval: FlickrInterval = 1.0,
) -> None:
    """Build GRAFT-style shards: satellite tile + its ground photos + offsets (resumable)."""
    from pipeline.errors import require_local_out

    require_local_out(str(out), "build-graft")
    from pipeline.executors import parse_executor
    from pipeline.graft.build import GraftBuildConfig, GraftInputs
    from pipeline.graft.photos import ColumnSpec
    from pipeline.graft.tiling import TilingConfig

    parse_executor(executor)
    cfg = GraftBuildConfig(collection=collection, pick=pick, metadata_only=metadata_only, shard_size=shard_size,
                           seed=seed)
    tiling = TilingConfig(gsd=gsd if gsd is not None else (10.0 if cfg.rule == "closest-to-date" else 1.0),
                          tile_px=tile_px, seed=seed, max_per_tile=max_per_tile, test_fraction=test_fraction,
                          split_block_deg=split_block_deg)
    cols = ColumnSpec(id_col, lat_col, lon_col, date_col, path_col, url_col, indoor_col, photo_dir, max_indoor)
    flickr: dict[str, Any] = {}
    if photos.lower().startswith("flickr:"):
        flickr = {k: v for k, v in {"min_taken": taken_from, "max_taken": taken_to, "endpoint": flickr_endpoint,
                                    "min_interval": flickr_interval}.items() if v is not None}
    inputs = GraftInputs(photos=photos, imagery=imagery, out=str(out), columns=cols, flickr=flickr)
    if prefect:
        from flows.graft import run_graft_flow

        summary = run_graft_flow(inputs, tiling, cfg, overwrite=overwrite, executor=executor)
    else:
        summary = _run_with_progress(inputs, tiling, cfg, overwrite, executor)
    console.print(
        f"[green]done[/]: {summary['written']:,} tiles written ({summary['photos_written']:,} photos), "
        f"{summary['failed']:,} failed rows, {summary['shards_done']}/{summary['shards_total']} shards in {out}"
    )
    if summary["errors"]:
        console.print("failed tiles by reason: " + ", ".join(f"{k} ×{v}" for k, v in summary["errors"].items()))
    if summary["photo_errors"]:
        console.print("unreadable photos: " + ", ".join(f"{k} ×{v}" for k, v in summary["photo_errors"].items()))


def _run_with_progress(inputs: Any, tiling: Any, cfg: Any, overwrite: bool, executor: str) -> dict[str, Any]:
    from pipeline.executors import map_shards
    from pipeline.graft.build import finish_graft, prepare_graft, run_graft_shard
    from pipeline.progress import progress_bar

    with console.status("planning tiles"):
        plan = prepare_graft(inputs, tiling, cfg, overwrite=overwrite, log=lambda m: console.print(m))
    total = sum(len(t.tiles) for t in plan.pending)
    with progress_bar(console, transient=True) as bar:
        job = bar.add_task("tiles", total=total)
        map_shards(run_graft_shard, plan.pending, plan.context, executor=executor,
                   on_object=lambda: bar.advance(job))
    return finish_graft(plan)


def register(app: typer.Typer) -> None:
    """Add ``graft plan|photos``, ``build-graft`` and ``train graft`` to the ``skyscript`` app."""
    app.add_typer(graft_app, name="graft")
    app.command("build-graft")(build_graft_command)
    from training.graft.cli import train_graft_command

    try:
        from training.cli import train_app  # the shared `skyscript train` group (skyclip, graft, ...)
    except ImportError:  # without it, GRAFT training still has a command of its own
        app.command("train-graft")(train_graft_command)
    else:
        train_app.command("graft")(train_graft_command)
