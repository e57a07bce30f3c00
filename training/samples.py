"""Random access to a build's samples: each ``{key}.jpg`` located by its byte offset in the shard tar.

The scorer, the trainer and the evaluator all need "these keys, with their captions" rather than
"every sample in order", and in parallel worker processes. Indexing a tar reads only its 512-byte
headers, after which any sample is one ``seek`` + ``read``; captions come from the shard parquet
(the same strings as ``{key}.txt`` / ``caption_multi``), so no JSON is decoded.
"""

from __future__ import annotations

import io
import tarfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.errors import InputFileError
from storage.scores import finished_shards, shard_stem

CAPTION_FIELDS = {"single": "caption_single", "multi": "caption_multi"}


@dataclass(frozen=True, slots=True)
class SampleRef:
    """Where one sample's JPEG lies, and its two captions."""

    key: str
    shard: int
    tar: str
    offset: int
    size: int
    caption_single: str
    caption_multi: str

    def caption(self, which: str) -> str:
        return self.caption_single if which == "single" else self.caption_multi


def index_tar(path: Path) -> dict[str, tuple[int, int]]:
    """``{key: (data offset, size)}`` of every ``{key}.jpg`` member."""
    found: dict[str, tuple[int, int]] = {}
    try:
        with tarfile.open(path, "r") as tf:
            for m in tf:
                name = m.name.rsplit("/", 1)[-1]
                if m.isfile() and name.endswith(".jpg"):
                    found[name[: -len(".jpg")]] = (m.offset_data, m.size)
    except (tarfile.TarError, OSError) as exc:  # a damaged shard is a per-shard error: say which and what to do
        raise InputFileError(
            f"shard {path} is unreadable ({exc}); delete its _stats.json and re-run skyscript build to redo it"
        ) from None
    return found


def caption_rows(
    out: Path, shard: int, keys: set[str] | None = None
) -> tuple[list[tuple[str, str, str]], Counter[str]]:
    """``(key, caption_single, caption_multi)`` of the shard's ok rows that have a caption, in row
    order, and a tally of the skipped (``missing_caption``). Reads only the shard parquet."""
    cols = ["key", "status", "caption_single", "caption_multi"]
    t = pq.read_table(Path(out) / "shards" / f"{shard_stem(shard)}.parquet", columns=cols).to_pydict()
    rows: list[tuple[str, str, str]] = []
    skipped: Counter[str] = Counter()
    for key, status, single, multi in zip(t["key"], t["status"], t["caption_single"], t["caption_multi"], strict=True):
        if status != "ok" or (keys is not None and key not in keys):
            continue
        if not single or not single.strip():
            skipped["missing_caption"] += 1
            continue
        rows.append((key, single, multi or ""))
    return rows, skipped


def tar_path(out: Path, shard: int) -> Path:
    return Path(out) / "shards" / f"{shard_stem(shard)}.tar"


def index_shard(out: Path, shard: int, keys: set[str] | None = None) -> tuple[list[SampleRef], Counter[str]]:
    """The shard's usable samples (status ok, a caption, an image) and a tally of the skipped."""
    rows, skipped = caption_rows(out, shard, keys)
    tar = tar_path(out, shard)
    offsets = index_tar(tar)
    refs: list[SampleRef] = []
    for key, single, multi in rows:
        where = offsets.get(key)
        if where is None:
            skipped["missing_image"] += 1
            continue
        refs.append(SampleRef(key, shard, str(tar), where[0], where[1], single, multi))
    return refs, skipped


def index_dataset(
    out: Path, shards: Iterable[int] | None = None, keys: set[str] | None = None
) -> tuple[list[SampleRef], Counter[str]]:
    """Usable samples of the given (default: all finished) shards, optionally only ``keys``."""
    refs: list[SampleRef] = []
    skipped: Counter[str] = Counter()
    for shard in finished_shards(out) if shards is None else shards:
        r, s = index_shard(out, shard, keys)
        refs.extend(r)
        skipped.update(s)
    return refs, skipped


def read_jpeg(ref: SampleRef) -> bytes:
    with open(ref.tar, "rb") as f:
        f.seek(ref.offset)
        return f.read(ref.size)


def decode_rgb(data: bytes) -> Any:
    """PIL RGB image; raises ``OSError``/``ValueError`` on corrupt or truncated bytes."""
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    img.load()  # decode now: a truncated JPEG fails here, not later inside a transform
    return img.convert("RGB")


def ok_keys(out: Path) -> set[str]:
    """Keys of every successful sample in the finished shards."""
    keys: set[str] = set()
    for s in finished_shards(out):
        t = pq.read_table(Path(out) / "shards" / f"{shard_stem(s)}.parquet", columns=["key", "status"]).to_pydict()
        keys.update(k for k, st in zip(t["key"], t["status"], strict=True) if st == "ok")
    return keys


class RefTable:
    """:class:`SampleRef` records stored column-wise (numpy + Arrow buffers).

    A list of a million Python objects in a ``Dataset`` is copied page by page into every forked
    DataLoader worker as reference counts are touched; flat buffers are shared for good. Indexing
    builds the record on demand.
    """

    def __init__(self, refs: list[SampleRef]) -> None:
        import numpy as np
        import pyarrow as pa

        self.tars = {r.shard: r.tar for r in refs}
        self.shard = np.fromiter((r.shard for r in refs), dtype=np.int32, count=len(refs))
        self.offset = np.fromiter((r.offset for r in refs), dtype=np.int64, count=len(refs))
        self.size = np.fromiter((r.size for r in refs), dtype=np.int64, count=len(refs))
        self.key = pa.array([r.key for r in refs], pa.string())
        self.single = pa.array([r.caption_single for r in refs], pa.string())
        self.multi = pa.array([r.caption_multi for r in refs], pa.string())

    def __len__(self) -> int:
        return len(self.shard)

    def __getitem__(self, i: int) -> SampleRef:
        s = int(self.shard[i])
        return SampleRef(self.key[i].as_py(), s, self.tars[s], int(self.offset[i]), int(self.size[i]),
                         self.single[i].as_py(), self.multi[i].as_py())
