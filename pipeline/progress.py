"""One progress bar for every long command: what, bar, done/total, %, rate, elapsed, ETA."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Items per second (rich's own speed columns are for bytes)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("  -.-/s" if speed is None else f"{speed:6.1f}/s", style="cyan")


def progress_bar(console: Console | None = None, *, transient: bool = False, disable: bool = False,
                 **kwargs: Any) -> Progress:
    """A rich ``Progress`` with a rate and an ETA (an unknown total shows the count and the rate)."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
        RateColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=transient, disable=disable, **kwargs,
    )
