"""The one cache root: every cache (Overpass responses, STAC searches, Earth Engine metadata,
tag models, embeddings, land mask) lives under ``$SKYSCRIPT_CACHE`` (default ``~/.cache/skyscript``).

Read at call time, never at import, so a test or a Dask worker that sets the variable is obeyed.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$SKYSCRIPT_CACHE`` or ``~/.cache/skyscript`` (not created)."""
    env = os.environ.get("SKYSCRIPT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "skyscript"


def cache_dir(*parts: str, create: bool = False) -> Path:
    """A sub-folder of the cache root, e.g. ``cache_dir("stac")``."""
    p = cache_root().joinpath(*parts)
    if create:
        p.mkdir(parents=True, exist_ok=True)
    return p
