"""``skyscript satclip sample``: an S2-100K-style dataset (index.csv + images/ + shards/)."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli_util import friendly_errors

satclip_app = typer.Typer(help="SatCLIP-style image–location pairs (S2-100K layout).", no_args_is_help=True)


@satclip_app.command("sample")
@friendly_errors
def sample_command(
    n: Annotated[int, typer.Option("--n", help="Number of patches (patch_0 .. patch_{N-1}).")],
    imagery: Annotated[
        str,
        typer.Option("--imagery", help="local:DIR (12-band GeoTIFF scenes), stac:URL or gee:PROJECT (Earth Engine)."),
    ],
    out: Annotated[str, typer.Option("--out", help="Output folder (resumable).")],
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same patches.")] = 0,
    by: Annotated[
        str,
        typer.Option(
            "--by",
            help="land: locations uniform over land by area; scene: a random window of a random scene (SatCLIP).",
        ),
    ] = "land",
    start: Annotated[str, typer.Option("--start", help="Scenes acquired on or after this date.")] = "2021-01-01",
    end: Annotated[str, typer.Option("--end", help="Scenes acquired on or before this date (default: open).")] = "",
    max_cloud: Annotated[float, typer.Option("--max-cloud", help="Scene cloud cover below this percentage.")] = 20.0,
    region: Annotated[str, typer.Option("--region", help="W,S,E,N box to sample in (default: the world).")] = "",
    no_land: Annotated[
        bool, typer.Option("--no-land", help="With --by land: do not require land (uniform by area).")
    ] = False,
    collection: Annotated[
        str,
        typer.Option(
            "--collection",
            help="STAC collection; with gee: an Earth Engine one (sentinel-2-l2a = COPERNICUS/S2_SR_HARMONIZED).",
        ),
    ] = "sentinel-2-l2a",
    max_scenes: Annotated[
        int, typer.Option("--max-scenes", help="--by scene with stac: or gee: at most this many scenes searched.")
    ] = 10_000,
    shard_size: Annotated[int, typer.Option("--shard-size", help="Patches per shard (the unit of resume).")] = 1000,
    max_tries: Annotated[int, typer.Option("--max-tries", help="Draws per patch before it is a failed row.")] = 20,
    executor: Annotated[
        str, typer.Option("--executor", help="Where shards run: local | dask-local[:N] | dask:tcp://HOST:PORT.")
    ] = "local",
    workers: Annotated[int, typer.Option("--workers", help="Threads drawing samples (same output for any value).")] = 4,
    max_empty: Annotated[
        float,
        typer.Option(
            "--max-empty", help="Reject windows with more than this fraction NaN/nodata or zero in all bands."
        ),
    ] = 0.1,
) -> None:
    """Sample 256×256, 12-band uint16 Sentinel-2 patches at 10 m with their centre coordinates."""
    from pipeline.errors import require_local_out

    require_local_out(str(out), "satclip sample")
    from pipeline.cli_util import err_console
    from pipeline.geo import BBox
    from pipeline.satclip.sampler import SampleConfig, sample
    from pipeline.satclip.scenes import SceneFilter
    from pipeline.satclip.sources import open_source

    box = BBox.parse(region).as_tuple() if region else None
    cfg = SampleConfig(
        n=n,
        seed=seed,
        by=by,
        land_only=not no_land,
        region=box,
        scenes=SceneFilter(start=start, end=end, max_cloud=max_cloud),
        shard_size=shard_size,
        max_tries=max_tries,
        max_empty=max_empty,
    )
    if executor == "local":
        source = open_source(imagery, collection=collection, max_scenes=max_scenes)
        result = sample(cfg, source, out, progress=True, workers=workers)
    else:
        from pipeline.satclip.distribute import sample_on

        def shard_done(stats: dict) -> None:
            err_console.print(f"shard {stats['shard']}: {stats['successes']} ok, {stats['failed']} failed")

        result = sample_on(executor, cfg, imagery, out, collection, max_scenes, workers, on_shard=shard_done)
    w = result["written"]
    err_console.print(
        f"{w.get('ok', 0)} patches written, {w.get('failed', 0)} failed rows"
        f"{', ' + str(w['skipped_shards']) + ' shards already done' if w.get('skipped_shards') else ''}; "
        f"index.csv has {result['index_rows']} rows → {result['out']}"
    )
    if result["errors"]:
        err_console.print("failures: " + ", ".join(f"{k} {v}" for k, v in sorted(result["errors"].items())))
