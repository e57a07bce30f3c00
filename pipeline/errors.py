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


def require_file(path: str, what: str, hint: str = "") -> None:
    """Raise :class:`InputFileError` unless ``path`` is a readable file."""
    import os

    if not os.path.exists(path):
        raise InputFileError(f"{what} not found: {path!r}. {hint}".strip())
    if not os.path.isfile(path):
        raise InputFileError(f"{what} is not a file: {path!r}. {hint}".strip())
    if not os.access(path, os.R_OK):
        raise InputFileError(f"{what} is not readable: {path!r}. Check its permissions.")
