"""``make demo``: a build over real data the user points at, or an explanation of what to pass."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console()
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def explain() -> None:
    console.print("[bold]make demo[/] builds SkyScript-style image-text shards from an OSM file and a folder "
                  "of georeferenced rasters. Pass:")
    console.print("  OSM=FILE          .osm.pbf / .osm / .osm.bz2 extract (or objects.parquet)")
    console.print("  IMAGERY=local:DIR folder of GeoTIFF/COG rasters covering the same ground")
    console.print("  OUT=DIR           output folder (default demo_out; re-running resumes)")
    console.print("  MAX_OBJECTS=N     optional seeded subset")
    oam = SHARED / "imagery" / "oam"
    if oam.is_dir():
        rel = Path("..") / "shared" / "data" / "imagery" / "oam"
        console.print("\nReal sample data is present beside the project; for example:")
        example = f"  make demo OSM={rel}/area2_buildings.osm IMAGERY=local:{rel} MAX_OBJECTS=60"
        console.print(example, soft_wrap=True)
    else:
        console.print("\n(No sample data at ../shared/data; any OSM extract plus matching orthophotos work.)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="make demo")
    ap.add_argument("--osm", default="")
    ap.add_argument("--imagery", default="")
    ap.add_argument("--out", default="demo_out")
    ap.add_argument("--max-objects", default="")
    args = ap.parse_args(argv)
    if not args.osm or not args.imagery:
        explain()
        return 0
    from pipeline.build import BuildInputs
    from pipeline.build_cli import run_with_progress
    from pipeline.config import load_config
    from pipeline.errors import SkyScriptError
    from storage.shards import iter_samples

    try:
        max_objects = int(args.max_objects) if args.max_objects else None
        cfg = load_config(max_objects=max_objects)
        inputs = BuildInputs(osm=args.osm, imagery=args.imagery, out=args.out)
        summary = run_with_progress(inputs, cfg, overwrite=False, executor="local")
    except (SkyScriptError, ValueError) as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return 2
    console.print(f"\n[green]{summary['written']} samples[/], {summary['failed']} failed rows, "
                  f"{summary['shards_done']} shards in {args.out}/shards")
    for reason, n in summary["errors"].items():
        console.print(f"  failed ×{n}: {reason}")
    table = Table("key", "gsd", "caption (multi-object)", title="first samples")
    for i, s in enumerate(iter_samples(Path(args.out) / "shards")):
        if i == 5:
            break
        table.add_row(s["key"], f"{s['json']['gsd']:.3g} m", s["json"]["caption_multi"])
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
