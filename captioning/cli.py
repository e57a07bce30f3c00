"""``skyscript caption``: JSON lines in, captions out.

Each input line is ``{"tags": {...}, "surrounding": [{...}, ...], "gsd": 0.3}`` (``surrounding``
and ``gsd`` optional); each output line is ``{"single": "...", "multi": "..."}``. Tags go
through the tag-visibility labels before assembly, exactly as in ``skyscript build``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import typer
from rich.markup import escape

from captioning.assemble import caption_multi, caption_single
from captioning.rules import CaptionRules, load_rules
from pipeline.cli_util import err_console, friendly_errors
from pipeline.config import CaptionConfig
from pipeline.errors import BadInputError
from pipeline.seams import TagVisibility

# Rich keeps the line breaks inside a paragraph, so each paragraph is one logical line.
_HELP = "\n\n".join(
    [
        "Caption objects from JSON lines on stdin; write JSON lines on stdout.",
        'Input, one JSON object per line: {"tags": {"landuse": "quarry", "resource": "bauxite"}, '
        '"surrounding": [{"natural": "tree"}], "gsd": 0.3}. "surrounding" (the tags of the other '
        'objects in the tile, most relevant first) and "gsd" (metres per pixel; default --gsd, else '
        "any resolution) are optional. Tag keys and values must be strings.",
        "Tags are filtered by the tag-visibility labels: names, addresses, refs and other tags that "
        "are not visible from above never reach a caption.",
        'Output, one JSON object per non-blank input line, in order: {"single": "...", "multi": "..."}. '
        'Both are "" when no tag is visible. Blank input lines are skipped.',
        'Bad input (malformed JSON, not an object, "tags" not a mapping, non-string values, bad "gsd") '
        'does not stop the run: that line\'s output is {"error": "line N: ..."}, the same message goes '
        "to stderr, and the exit code is 1 at the end. Exit code 2: the options, rules or visibility "
        "model are unusable; nothing was read.",
    ]
)


def _check_tags(tags: Any, where: str) -> dict[str, str]:
    if not isinstance(tags, Mapping):
        raise BadInputError(f"{where} must be a JSON object of key: value strings, got {_kind(tags)}")
    for k, v in tags.items():
        if not isinstance(v, str):
            raise BadInputError(
                f'{where}: value of {k!r} must be a string, got {_kind(v)} {json.dumps(v)}; quote it, e.g. "{k}": "{v}"'
            )
    return dict(tags)


def _kind(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def parse_line(text: str, default_gsd: float | None) -> tuple[dict[str, str], list[dict[str, str]], float | None]:
    """One input line -> (tags, surrounding, gsd). Raises :class:`BadInputError` naming the fault."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInputError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise BadInputError(f'expected a JSON object like {{"tags": {{...}}}}, got {_kind(record)}')
    if "tags" not in record:
        raise BadInputError('missing "tags" (a JSON object of key: value strings)')
    tags = _check_tags(record["tags"], '"tags"')
    raw_around = record.get("surrounding", [])
    if raw_around is None:
        raw_around = []
    if not isinstance(raw_around, list):
        raise BadInputError(f'"surrounding" must be a JSON array of tag objects, got {_kind(raw_around)}')
    surrounding = [_check_tags(t, f'"surrounding"[{i}]') for i, t in enumerate(raw_around)]
    gsd = record.get("gsd", default_gsd)
    if gsd is not None:
        if isinstance(gsd, bool) or not isinstance(gsd, int | float) or not math.isfinite(gsd) or gsd <= 0:
            raise BadInputError(f'"gsd" must be a positive number of metres per pixel or null, got {gsd!r}')
        gsd = float(gsd)
    return tags, surrounding, gsd


def caption_record(
    text: str,
    vis: TagVisibility,
    rules: CaptionRules,
    max_surrounding: int | None,
    default_gsd: float | None = None,
) -> dict[str, str]:
    """Captions for one input line (visibility-filtered); raises :class:`BadInputError`."""
    tags, surrounding, gsd = parse_line(text, default_gsd)
    visible = vis.visible_tags(tags, gsd)
    around = [vis.visible_tags(t, gsd) for t in surrounding]
    return {
        "single": caption_single(visible, rules=rules),
        "multi": caption_multi(visible, around, max_surrounding=max_surrounding, rules=rules),
    }


def _decode(raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"not UTF-8 text (bad byte at offset {exc.start})") from None


def run_lines(
    lines: Iterable[bytes | str],
    out: BinaryIO,
    vis: TagVisibility,
    rules: CaptionRules,
    max_surrounding: int | None,
    default_gsd: float | None = None,
) -> int:
    """Caption every line of ``lines`` into ``out`` (UTF-8 JSON lines); returns the number of bad lines."""
    bad = 0
    for lineno, raw in enumerate(lines, start=1):
        try:
            text = _decode(raw)
            if not text.strip():
                continue
            result: dict[str, str] = caption_record(text, vis, rules, max_surrounding, default_gsd)
        except (BadInputError, TypeError) as exc:
            bad += 1
            message = f"line {lineno}: {exc}"
            err_console.print(f"[bold red]error:[/] stdin {escape(message)}", soft_wrap=True)
            result = {"error": message}
        # Bytes, not text: captions carry non-ASCII values whatever the terminal's locale.
        out.write((json.dumps(result, ensure_ascii=False) + "\n").encode("utf-8"))
        out.flush()  # a pipe reader sees each caption as soon as it is made
    return bad


def _load_visibility(model: str | None) -> TagVisibility:
    # Imported here: the labels/model module is heavier than `skyscript --help` should pay for.
    from tag_classifier.visibility import load_visibility

    return load_visibility(model)


@friendly_errors
def caption_command(
    model: Annotated[
        str | None,
        typer.Option("--model", help="Trained tag classifier folder (default: the curated labels only)."),
    ] = None,
    gsd: Annotated[
        float | None,
        typer.Option("--gsd", help='GSD in m/px for lines without "gsd" (default: any resolution).'),
    ] = None,
    max_surrounding: Annotated[
        int,
        typer.Option("--max-surrounding", min=0, help="At most this many neighbours in the multi caption."),
    ] = CaptionConfig().max_surrounding,
    rules_dir: Annotated[
        Path | None,
        typer.Option(
            "--rules",
            help="Folder with phrases.csv, feature_keys.csv, never_caption.csv (default: the packaged rules).",
        ),
    ] = None,
) -> None:
    if gsd is not None and not gsd > 0:
        raise BadInputError(f"--gsd must be a positive number of metres per pixel, got {gsd}")
    rules = load_rules(rules_dir)
    vis = _load_visibility(model)
    stdin = typer.get_binary_stream("stdin")
    bad = run_lines(stdin, typer.get_binary_stream("stdout"), vis, rules, max_surrounding, gsd)
    if bad:
        err_console.print(f"[bold red]error:[/] {bad} bad input line(s); see the error lines above", soft_wrap=True)
        raise typer.Exit(code=1)


caption_command.__doc__ = _HELP
