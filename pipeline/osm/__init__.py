"""OSM sources: files (pyosmium) and Overpass, yielding the same :class:`OsmObject` records.

``make_osm_source(spec)`` is the one entry point the CLI and the build use; sources are
imported lazily so ``skyscript --help`` stays fast.
"""

from __future__ import annotations

from typing import Any

from pipeline.config import OsmConfig
from pipeline.errors import BadInputError
from pipeline.seams import OsmSource

FILE_SUFFIXES = (".osm.pbf", ".pbf", ".osm", ".osm.bz2", ".osm.gz")
SPEC_HELP = (
    "use pbf:FILE, overpass:URL[,URL2...], overpass (default endpoints), or a path ending in "
    ".osm.pbf/.pbf/.osm/.osm.bz2/.osm.gz or .parquet (an objects table)"
)


def make_osm_source(spec: str, config: OsmConfig | None = None, **options: Any) -> OsmSource:
    """Build the source named by ``spec``.

    ``pbf:FILE`` (any OSM file pyosmium reads), ``overpass:URL`` or ``overpass`` (endpoints
    from :class:`pipeline.osm.overpass.OverpassConfig`), or a bare path: an OSM file by suffix
    or an ``objects.parquet``. ``options`` go to the source (e.g. ``index=`` for files,
    ``overpass_config=`` for Overpass). Missing files raise :class:`InputFileError`.
    """
    text = str(spec).strip()
    if not text:
        raise BadInputError(f"empty OSM source; {SPEC_HELP}")
    kind, sep, rest = text.partition(":")
    if text == "overpass" or (sep and kind == "overpass"):
        from pipeline.osm.overpass import OverpassConfig, OverpassSource

        cfg: OverpassConfig = (
            options.pop("overpass_config", None) or (config.overpass if config is not None else OverpassConfig())
        )
        if rest:  # overpass:URL or overpass:URL1,URL2 (tried in turn, each with its own slots)
            cfg = cfg.with_endpoints([u for u in rest.split(",") if u.strip()])
        return OverpassSource(cfg, config, **options)
    options.pop("overpass_config", None)  # only Overpass sources take it
    if sep and kind in ("pbf", "file", "osm"):
        from pipeline.osm.filesource import FileOsmSource

        if not rest:
            raise BadInputError(f"OSM source {text!r} names no file; {SPEC_HELP}")
        return FileOsmSource(rest, config, **options)
    lower = text.lower()
    if lower.endswith(".parquet"):
        from pipeline.osm.filesource import TableOsmSource

        return TableOsmSource(text)
    if lower.endswith(FILE_SUFFIXES):
        from pipeline.osm.filesource import FileOsmSource

        return FileOsmSource(text, config, **options)
    raise BadInputError(f"unknown OSM source {text!r}; {SPEC_HELP}")


__all__ = ["SPEC_HELP", "make_osm_source"]
