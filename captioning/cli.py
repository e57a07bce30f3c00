"""``skyscript caption``: JSON lines in, captions out.

(Skeleton: filled in by the captioning work.)
"""

from __future__ import annotations

import typer


def caption_command() -> None:
    """Caption JSON lines from stdin."""
    raise typer.Exit(code=2)
