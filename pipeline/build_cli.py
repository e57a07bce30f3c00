"""``skyscript build`` (skeleton; the build orchestration fills it in)."""

from __future__ import annotations

import typer


def build_command() -> None:
    """Build SkyScript-style shards."""
    raise typer.Exit(code=2)
