"""Shard writer and reader: webdataset tar + one parquet row per planned sample + stats.

A shard is *done* iff ``NNNNN_stats.json`` exists. The tar and parquet are written under
temporary names and renamed before the stats file, so a killed build never leaves a
half-written shard that looks finished; stale temporaries are swept on the next run.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from pipeline.records import STATUS_FAILED, STATUS_OK, Pair
from storage.atomic import temp_path
from storage.tar import SampleTarWriter

SHARD_DIGITS = 5
TMP_MARK = ".tmp-"  # in every temporary name storage.atomic.temp_path makes
# Fixed tar member mtime: re-running a build reproduces byte-identical shards.
TAR_MTIME = 0.0

ROW_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("shard", pa.int32()),
        ("osm_type", pa.string()),
        ("osm_id", pa.int64()),
        ("status", pa.string()),
        ("error_code", pa.string()),  # short stable reason of a failed row (pipeline.failures)
        ("error_message", pa.string()),
        ("caption_single", pa.string()),
        ("caption_multi", pa.string()),
        ("tags", pa.string()),  # JSON
        ("visible_tags", pa.string()),  # JSON
        ("lon", pa.float64()),  # the chip's centre
        ("lat", pa.float64()),
        ("object_lon", pa.float64()),  # a point on the object
        ("object_lat", pa.float64()),
        ("bbox", pa.list_(pa.float64())),
        ("gsd", pa.float64()),
        ("source", pa.string()),
        ("collection", pa.string()),
        ("image_id", pa.string()),
        ("acquired", pa.string()),
        ("crs", pa.string()),
        ("transform", pa.list_(pa.float64())),  # the chip grid's affine (a, b, c, d, e, f)
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("empty_fraction", pa.float64()),
        ("cloud_cover", pa.float64()),  # of the main scene, where the source knows it
        ("provenance", pa.string()),  # JSON: how the pixels were read (file, window, resampling, ...)
        ("jpg_bytes", pa.int64()),
    ]
)


def shard_name(index: int) -> str:
    return f"{index:0{SHARD_DIGITS}d}"


def shard_paths(shards_dir: Path, index: int) -> dict[str, Path]:
    stem = shard_name(index)
    return {
        "tar": shards_dir / f"{stem}.tar",
        "parquet": shards_dir / f"{stem}.parquet",
        "stats": shards_dir / f"{stem}_stats.json",
    }


def is_done(shards_dir: Path, index: int) -> bool:
    return shard_paths(shards_dir, index)["stats"].is_file()


def sweep_temporaries(shards_dir: Path) -> int:
    """Remove leftovers of killed writers; returns how many were removed."""
    n = 0
    if shards_dir.is_dir():
        for p in shards_dir.iterdir():
            if TMP_MARK in p.name:
                p.unlink(missing_ok=True)
                n += 1
    return n


def encode_jpeg(pixels: Any, quality: int) -> bytes:
    buf = io.BytesIO()
    # optimize=False and no EXIF keep the encoder deterministic across runs.
    Image.fromarray(pixels, mode="RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _empty_row(key: str, shard: int) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(ROW_SCHEMA.names)
    row.update(key=key, shard=shard, error_message="")
    return row


@dataclass
class ShardWriter:
    """Collects one shard's samples and failures; :meth:`close` publishes it atomically."""

    shards_dir: Path
    index: int
    jpeg_quality: int = 90
    rows: list[dict[str, Any]] = field(default_factory=list)
    stage_seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    _started: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        self.shards_dir.mkdir(parents=True, exist_ok=True)
        self._paths = shard_paths(self.shards_dir, self.index)
        self._tar_tmp = temp_path(self._paths["tar"])
        self._stream = open(self._tar_tmp, "wb")  # noqa: SIM115 - closed in close()/abort()
        self._tar = SampleTarWriter(self._stream, mtime=TAR_MTIME)
        self._keys: set[str] = set()

    def _claim(self, key: str) -> None:
        if "." in key:
            raise ValueError(f"sample key {key!r} contains a dot; keys must not (webdataset splits on it)")
        if key in self._keys:
            raise ValueError(f"sample key {key!r} written twice to shard {self.index}")
        self._keys.add(key)

    def add_pair(self, pair: Pair) -> None:
        self._claim(pair.key)
        meta = pair.metadata()
        t0 = time.perf_counter()
        jpg = encode_jpeg(pair.chip.pixels, self.jpeg_quality)
        t1 = time.perf_counter()
        self._tar.write(
            {
                "__key__": pair.key,
                "jpg": jpg,
                "txt": pair.caption_single.encode("utf-8"),
                "json": json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8"),
            }
        )
        self.stage_seconds["encode"] += t1 - t0
        self.stage_seconds["write"] += time.perf_counter() - t1
        row = _empty_row(pair.key, self.index)
        row.update(
            osm_type=meta["osm_type"],
            osm_id=meta["osm_id"],
            status=STATUS_OK,
            caption_single=pair.caption_single,
            caption_multi=pair.caption_multi,
            tags=json.dumps(meta["tags"], ensure_ascii=False),
            visible_tags=json.dumps(meta["visible_tags"], ensure_ascii=False),
            lon=meta["lon"],
            lat=meta["lat"],
            object_lon=meta["object_lon"],
            object_lat=meta["object_lat"],
            bbox=meta["bbox"],
            gsd=meta["gsd"],
            source=meta["source"],
            collection=meta["collection"],
            image_id=meta["image_id"],
            acquired=meta["acquired"],
            crs=meta["crs"],
            transform=meta["transform"],
            width=meta["width"],
            height=meta["height"],
            empty_fraction=meta["empty_fraction"],
            cloud_cover=meta["cloud_cover"],
            provenance=json.dumps(meta["provenance"], ensure_ascii=False, sort_keys=True, default=str),
            jpg_bytes=len(jpg),
        )
        self.rows.append(row)

    def add_failure(
        self, key: str, osm_type: str, osm_id: int, message: str, error_code: str | None = None, **extra: Any
    ) -> None:
        self._claim(key)
        row = _empty_row(key, self.index)
        code = error_code or getattr(message, "code", None) or "unknown"
        row.update(osm_type=osm_type, osm_id=int(osm_id), status=STATUS_FAILED, error_message=str(message),
                   error_code=code)
        row.update({k: v for k, v in extra.items() if k in row})
        self.rows.append(row)

    def stats(self) -> dict[str, Any]:
        tally = Counter(r["error_code"] for r in self.rows if r["status"] == STATUS_FAILED)
        n_ok = sum(r["status"] == STATUS_OK for r in self.rows)
        return {
            "shard": self.index,
            "count": len(self.rows),
            "successes": n_ok,
            "failed": len(self.rows) - n_ok,
            "errors": dict(sorted(tally.items())),
            "seconds": round(time.perf_counter() - self._started, 4),
            "stage_seconds": {k: round(v, 4) for k, v in sorted(self.stage_seconds.items())},
        }

    def close(self) -> dict[str, Any]:
        """Publish tar, then parquet, then stats (the done marker). Returns the stats."""
        self._tar.close()
        self._stream.close()
        stats = self.stats()
        publish_shard(self._paths, self._tar_tmp, pa.Table.from_pylist(self.rows, schema=ROW_SCHEMA), stats)
        return stats

    def abort(self) -> None:
        """Drop everything written so far (the shard stays not-done)."""
        abort_tar(self._tar, self._stream, self._tar_tmp)


def publish_shard(paths: dict[str, Path], tar_tmp: Path, rows: pa.Table, stats: dict[str, Any]) -> None:
    """Publish a shard whose tar is complete at ``tar_tmp``: the tar, then the parquet rows, then the
    stats file (the done marker), each written under a temporary name and renamed into place — so a
    killed writer never leaves a shard that looks finished. Shared by every shard writer."""
    parquet_tmp = temp_path(paths["parquet"])
    pq.write_table(rows, parquet_tmp)
    stats_tmp = temp_path(paths["stats"])
    stats_tmp.write_text(json.dumps(stats, indent=1, sort_keys=True))
    os.replace(tar_tmp, paths["tar"])
    os.replace(parquet_tmp, paths["parquet"])
    os.replace(stats_tmp, paths["stats"])


def abort_tar(tar: Any, stream: Any, tar_tmp: Path) -> None:
    """Close a half-written shard's tar and drop it (the shard stays not-done)."""
    try:
        tar.close()
    finally:
        stream.close()
        tar_tmp.unlink(missing_ok=True)


def done_shards(shards_dir: Path) -> list[int]:
    if not shards_dir.is_dir():
        return []
    return sorted(int(p.name.split("_")[0]) for p in shards_dir.glob("*_stats.json"))


def read_rows(shards_dir: Path) -> pa.Table:
    """All finished shards' parquet rows, in shard order."""
    tables = [pq.read_table(shard_paths(shards_dir, i)["parquet"]) for i in done_shards(shards_dir)]
    if not tables:
        return ROW_SCHEMA.empty_table()
    return pa.concat_tables(tables)


def iter_samples(shards_dir: Path) -> Iterator[dict[str, Any]]:
    """Decoded samples of finished shards via webdataset: key, jpg bytes, txt, json."""
    urls = [str(shard_paths(shards_dir, i)["tar"]) for i in done_shards(shards_dir)]
    if not urls:
        return
    import webdataset as wds  # reading only: it imports torch

    ds = wds.WebDataset(urls, shardshuffle=False, empty_check=False)
    for sample in ds:
        yield {
            "key": sample["__key__"],
            "jpg": sample["jpg"],
            "txt": sample["txt"].decode("utf-8"),
            "json": json.loads(sample["json"]),
        }
