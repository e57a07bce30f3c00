"""What a build *is*: the parts of its inputs that decide which samples it makes.

``run.json`` keeps two views of each input: ``describe()`` (for people: paths, endpoints) and
the identity here (for the fingerprint). Identities hold content, not locations: a file is its
name, size and hash, never the path as typed, so a resume from another working directory, with
an absolute instead of a relative path, or under another ``$HOME`` is the same build; operational
settings (endpoints, caches, concurrency, timeouts) are left out, and secrets never enter.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

FULL_HASH_MAX = 512 * 1024 * 1024  # hash whole files up to this size; larger: size + head + tail
_PART = 8 * 1024 * 1024
# describe() keys that say where or how, not what (dropped when a source has no identity()).
_LOCATION_KEYS = frozenset({
    "path", "root", "dir", "labels_file", "endpoints", "cache", "cache_dir", "slots_per_endpoint",
    "timeout_s", "maxsize_bytes", "max_concurrent", "url_cache", "skipped",
})


def file_identity(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Name, size and SHA-256 of a file (head + tail for very large files)."""
    p = Path(path).resolve()
    st = p.stat()
    return {"name": p.name, "bytes": st.st_size, **_digest(str(p), st.st_size, st.st_mtime_ns)}


@lru_cache(maxsize=256)
def _digest(path: str, size: int, mtime_ns: int) -> dict[str, str]:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= FULL_HASH_MAX:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
            return {"sha256": h.hexdigest()}
        h.update(f.read(_PART))
        f.seek(size - _PART)
        h.update(f.read(_PART))
    return {"sha256_head_tail": h.hexdigest()}


def folder_identity(path: str | os.PathLike[str], names: list[str] | None = None) -> str:
    """One hash over the files of a folder (names, sizes, contents), e.g. a tag model's weights."""
    root = Path(path)
    files = sorted(root.iterdir()) if names is None else [root / n for n in names]
    h = hashlib.sha256()
    for f in files:
        if f.is_file() and not f.name.endswith((".lock", ".tmp")):
            ident = file_identity(f)
            h.update(f"{f.name}:{ident['bytes']}:{ident.get('sha256') or ident.get('sha256_head_tail')}".encode())
    return h.hexdigest()


def strip_locations(desc: Any) -> Any:
    """``describe()`` output without location/operational keys (recursively)."""
    if isinstance(desc, dict):
        return {k: strip_locations(v) for k, v in desc.items() if k not in _LOCATION_KEYS}
    if isinstance(desc, list):
        return [strip_locations(v) for v in desc]
    return desc


def source_identity(source: Any) -> Any:
    """A source's ``identity()`` when it has one, else its description without locations."""
    ident = getattr(source, "identity", None)
    if callable(ident):
        return ident()
    return strip_locations(source.describe())
