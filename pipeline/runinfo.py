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


# What a build leaves in its folder besides run.json: any of these without a readable run.json
# means the folder holds a build whose identity cannot be checked.
BUILD_OUTPUTS = ("objects.parquet", "plan", "shards", "scores", "selections")
_HINT = "Pass --overwrite to delete it and start over, or choose another --out."


def read_run(out: Path) -> dict[str, Any] | None:
    """The run.json of ``out``; None when there is none. An unreadable one raises (never 'empty')."""
    p = out / "run.json"
    if not p.exists():
        return None
    try:
        data = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OutputConflictError(
            f"{str(p)!r} is unreadable ({type(exc).__name__}: {exc}), so the build in {str(out)!r} cannot be "
            f"checked against this one. {_HINT}"
        ) from exc
    if not isinstance(data, dict) or "fingerprint" not in data:
        raise OutputConflictError(f"{str(p)!r} is not a skyscript run.json (no fingerprint). {_HINT}")
    return data


def leftover_outputs(out: Path) -> list[str]:
    """Names of build outputs present in ``out`` (non-empty folders and files)."""
    found = []
    for name in BUILD_OUTPUTS:
        p = out / name
        if p.is_file() or (p.is_dir() and any(p.iterdir())):
            found.append(name)
    return found


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        flat: dict[str, Any] = {}
        for k, v in obj.items():
            flat.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return flat
    return {prefix: obj}


def identity_diff(old: dict[str, Any] | None, new: dict[str, Any], limit: int = 5) -> list[str]:
    """``key: old -> new`` for each setting that differs (at most ``limit``, then a count)."""
    if not isinstance(old, dict):
        return ["(the earlier run.json records no identity: it was made by an older version)"]
    a, b = _flatten(json.loads(json.dumps(old, default=str))), _flatten(json.loads(json.dumps(new, default=str)))
    keys = sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))
    lines = [f"{k}: {_short(a.get(k, '<absent>'))} -> {_short(b.get(k, '<absent>'))}" for k in keys[:limit]]
    if len(keys) > limit:
        lines.append(f"... and {len(keys) - limit} more")
    return lines


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def check_compatible(out: Path, fp: str, identity: dict[str, Any] | None = None) -> bool:
    """True when ``out`` holds a run with this fingerprint (resume); False when it holds no build.

    Raises :class:`OutputConflictError` when it holds a different build (naming the settings
    that differ), an unreadable run.json, or build outputs without any run.json — two builds
    are never mixed in one folder.
    """
    prev = read_run(out)
    if prev is None:
        left = leftover_outputs(out)
        if left:
            raise OutputConflictError(
                f"{str(out)!r} holds build outputs ({', '.join(left)}) but no run.json, so they cannot be "
                f"checked against this build. {_HINT}"
            )
        return False
    if prev.get("fingerprint") != fp:
        diff = "; ".join(identity_diff(prev.get("identity"), identity or {}))
        raise OutputConflictError(
            f"{str(out)!r} already holds a different build (fingerprint {prev.get('fingerprint')} != {fp}); "
            f"what differs: {diff}. {_HINT}"
        )
    return True


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
