"""Actionable exceptions. Each subclasses a builtin so callers can catch broadly.

Messages name the offending input and say what to do about it. Per-object problems are
*not* raised: they become rows with ``status="failed"`` and an ``error_message``.
"""

from __future__ import annotations


class SkyScriptError(Exception):
    """Base class for every error this toolkit raises on purpose."""


class InputFileError(SkyScriptError, FileNotFoundError):
    """An input file or folder is missing, unreadable or of the wrong kind."""


class BadInputError(SkyScriptError, ValueError):
    """An argument or input value is malformed (bbox, tag syntax, config key, ...)."""


class ConfigError(BadInputError):
    """The YAML config or a preset is invalid."""


class ImageryError(SkyScriptError, RuntimeError):
    """An imagery source cannot serve a request (per-shard; per-object issues are rows)."""


class OsmSourceError(SkyScriptError, RuntimeError):
    """An OSM source failed in a way retries could not fix."""


class OutputConflictError(SkyScriptError, FileExistsError):
    """The output folder holds a run made with a different config."""


def require_local_out(out: str, command: str) -> None:
    """Refuse an object-storage ``--out`` where a command writes only to local folders (one line,
    instead of silently writing a local folder named ``s3:``)."""
    import re

    text = str(out)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:/", text):  # s3://..., also as pathlib renders it (s3:/...)
        raise BadInputError(
            f"--out {text!r}: {command} writes to a local folder only; object storage (s3://) is supported by "
            "skyscript build and the dataset commands. Write locally, then copy (e.g. `aws s3 sync`)."
        )


def require_file(path: str, what: str, hint: str = "") -> None:
    """Raise :class:`InputFileError` unless ``path`` is a readable file."""
    import os

    if not os.path.exists(path):
        raise InputFileError(f"{what} not found: {path!r}. {hint}".strip())
    if not os.path.isfile(path):
        raise InputFileError(f"{what} is not a file: {path!r}. {hint}".strip())
    if not os.access(path, os.R_OK):
        raise InputFileError(f"{what} is not readable: {path!r}. Check its permissions.")
