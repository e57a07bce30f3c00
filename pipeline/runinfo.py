"""``run.json``: resolved config, versions, seeds and source descriptions — never secrets."""

from __future__ import annotations

import hashlib
import json
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.config import redact
from pipeline.errors import OutputConflictError
from storage.atomic import publishing

VERSIONED = (
    "skyscript-toolkit", "numpy", "shapely", "pyproj", "rasterio", "osmium", "pyarrow",
    "webdataset", "pillow", "scikit-learn", "torch", "open_clip_torch", "prefect", "dask",
)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def fingerprint(identity: dict[str, Any]) -> str:
    """Hash of what decides the samples (config, inputs, sources); not timestamps."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    with publishing(path) as tmp:
        tmp.write_text(json.dumps(redact(data), indent=1, sort_keys=True, default=str))


def read_run(out: Path) -> dict[str, Any] | None:
    p = out / "run.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        return None


def check_compatible(out: Path, fp: str) -> bool:
    """True when ``out`` holds a run with this fingerprint (resume); False when empty.

    Raises :class:`OutputConflictError` when it holds a different run.
    """
    prev = read_run(out)
    if prev is None:
        return False
    if prev.get("fingerprint") != fp:
        raise OutputConflictError(
            f"{str(out)!r} already holds a build made with different inputs or config "
            f"(fingerprint {prev.get('fingerprint')} != {fp}). Pass --overwrite to start over, "
            "or choose another --out."
        )
    return True


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
