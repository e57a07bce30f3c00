"""CLI for OSM acquisition: ``skyscript osm``, ``skyscript plan ...``, ``skyscript tags count``.

(Skeleton: filled in by the OSM acquisition work.)
"""

from __future__ import annotations

import typer

plan_app = typer.Typer(help="Plan OSM acquisition: random land cells and targeted rare-tag queries.")


def osm_command() -> None:
    """Acquire OSM objects into an objects table."""
    raise typer.Exit(code=2)


def tags_count_command() -> None:
    """Per-tag object counts of an objects table."""
    raise typer.Exit(code=2)
