"""CLI for the tag classifier: ``skyscript tags train|eval|predict``.

(Skeleton: filled in by the tag classifier work.)
"""

from __future__ import annotations

import typer

tags_app = typer.Typer(help="Which OSM tags are visible from above, and at what GSD.")
