"""``make demo``: a real build of the bundled sample (no network, no account), or of data you pass.

With no arguments it builds ``pipeline/demo_data`` — real OpenAerialMap orthophotos over Kampala
and the real OSM buildings on them (see its README for licences) — into ``demo_out``, then shows
what it made: counts, failure reasons, a table of samples, and ``demo_out/preview.png`` (chips
with their captions). ``--osm``/``--imagery`` build other data the same way.
"""

from __future__ import annotations

import argparse
import io
import sys
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console()
LIVE_EXAMPLE = (
    "skyscript build --osm overpass --bbox 24.935,60.164,24.953,60.179 "
    "--imagery stac:https://earth-search.aws.element84.com/v1 --out helsinki_out --max-objects 200"
)


def bundled_sample() -> tuple[str, str]:
    """(OSM file, imagery spec) of the sample shipped inside the package."""
    root = Path(str(resources.files("pipeline") / "demo_data"))
    return str(root / "kampala_buildings.osm"), f"local:{root}"


def preview(shards: Path, out_png: Path, n: int = 12, size: int = 192) -> int:
    """A contact sheet of the first ``n`` samples: chip above, caption below. Returns how many."""
    from PIL import Image, ImageDraw

    from storage.shards import iter_samples

    tiles = []
    for s in iter_samples(shards):
        img = Image.open(io.BytesIO(s["jpg"])).convert("RGB").resize((size, size))
        tiles.append((img, s["json"]["caption_multi"], s["key"]))
        if len(tiles) == n:
            break
    if not tiles:
        return 0
    cols = 4
    rows = (len(tiles) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * size, rows * (size + 34)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (img, caption, key) in enumerate(tiles):
        x, y = (i % cols) * size, (i // cols) * (size + 34)
        sheet.paste(img, (x, y))
        draw.text((x + 3, y + size + 2), key, fill="black")
        draw.text((x + 3, y + size + 16), caption[:34], fill="black")
    out_png.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_png)
    return len(tiles)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="make demo", description=__doc__)
    ap.add_argument("--osm", default="", help="OSM file (default: the bundled Kampala sample)")
    ap.add_argument("--imagery", default="", help="imagery spec, e.g. local:DIR (default: the bundled sample)")
    ap.add_argument("--out", default="demo_out")
    ap.add_argument("--max-objects", default="")
    args = ap.parse_args(argv)
    from pipeline.build import BuildInputs
    from pipeline.build_cli import run_with_progress
    from pipeline.config import load_config
    from pipeline.errors import SkyScriptError
    from storage.shards import iter_samples

    osm, imagery = args.osm, args.imagery
    if not osm and not imagery:
        osm, imagery = bundled_sample()
        console.print("[bold]make demo[/]: building the bundled sample (real OpenAerialMap imagery of Kampala and "
                      "the OSM buildings on it; no network, no account)")
    elif not osm or not imagery:
        console.print("[bold red]error:[/] pass both OSM=FILE and IMAGERY=local:DIR, or neither for the bundled sample")
        return 2
    try:
        max_objects = int(args.max_objects) if args.max_objects else None
        cfg = load_config(max_objects=max_objects)
        inputs = BuildInputs(osm=osm, imagery=imagery, out=args.out)
        summary = run_with_progress(inputs, cfg, overwrite=False, executor="local")
    except (SkyScriptError, ValueError) as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return 2
    shards = Path(args.out) / "shards"
    console.print(f"\n[green]{summary['written']} samples[/], {summary['failed']} failed rows, "
                  f"{summary['shards_done']} shards in {shards}")
    for reason, n in summary["errors"].items():
        console.print(f"  failed ×{n}: {reason}")
    table = Table("key", "gsd", "chip", "caption (multi-object)", title="first samples")
    for i, s in enumerate(iter_samples(shards)):
        if i == 5:
            break
        m = s["json"]
        table.add_row(s["key"], f"{m['gsd']:.3g} m", f"{m['width']}×{m['height']} {m['image_id']}", m["caption_multi"])
    console.print(table)
    png = Path(args.out) / "preview.png"
    if preview(shards, png):
        console.print(f"preview of the chips with their captions: {png}")
    console.print("\nNext, the live path (Overpass + keyless STAC, network needed):\n  " + LIVE_EXAMPLE, soft_wrap=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
