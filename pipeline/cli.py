"""The ``skyscript`` command line. Sub-commands live beside the code they drive.

Heavy libraries (torch, open_clip, prefect) are imported inside commands so that
``skyscript --help`` stays fast.
"""

from __future__ import annotations

import typer

from captioning.cli import caption_command
from flows.serve import serve_command
from pipeline.build_cli import build_command
from pipeline.graft.cli import register as register_graft
from pipeline.imagery.cli import imagery_app
from pipeline.osm.cli import osm_command, plan_app, tags_count_command
from pipeline.report.cli import report_command
from tag_classifier.cli import tags_app
from training.cli import register as register_scoring_training
from training.satclip.cli import register as register_satclip

app = typer.Typer(
    name="skyscript",
    help="Build remote-sensing vision-language datasets from OpenStreetMap and open imagery.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("build")(build_command)
app.command("caption")(caption_command)
app.command("serve")(serve_command)
app.command("report")(report_command)
app.command("osm")(osm_command)
app.add_typer(plan_app, name="plan")
app.add_typer(imagery_app, name="imagery")
tags_app.command("count")(tags_count_command)
app.add_typer(tags_app, name="tags")
register_scoring_training(app)  # score, filter, export, split, train skyclip, eval
register_graft(app)  # graft plan|photos, build-graft, train graft
register_satclip(app)  # satclip sample, train satclip, eval location


def main() -> None:
    app()


if __name__ == "__main__":
    main()
