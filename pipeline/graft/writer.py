"""GRAFT shard writer: ``{key}.sat.jpg`` + ``{key}.gNN.jpg`` + ``{key}.json`` per tile.

Same contract as :mod:`storage.shards`: tar and parquet under temporary names, renamed, then the
stats file last (a shard is done iff ``NNNNN_stats.json`` exists); one parquet row per planned
tile, failures included (``status``, ``error_code``, ``error_message``).
"""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from storage.atomic import temp_path
from storage.shards import TMP_MARK, abort_tar, done_shards, is_done, publish_shard, shard_paths, sweep_temporaries
from storage.tar import SampleTarWriter

TAR_MTIME = 0.0  # byte-identical shards on re-runs

ROW_SCHEMA = pa.schema([
    ("key", pa.string()), ("shard", pa.int32()), ("tile_id", pa.string()), ("status", pa.string()),
    ("error_code", pa.string()), ("error_message", pa.string()), ("split", pa.string()),
    ("lon", pa.float64()), ("lat", pa.float64()), ("date", pa.string()), ("acquired", pa.string()),
    ("date_gap_days", pa.float64()), ("source", pa.string()), ("collection", pa.string()),
    ("image_id", pa.string()), ("crs", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
    ("gsd", pa.float64()), ("n_photos", pa.int32()), ("n_photos_ok", pa.int32()),
    ("photo_errors", pa.string()), ("sat_bytes", pa.int64()), ("photo_bytes", pa.int64()),
])


def encode_jpeg(pixels: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), mode="RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


@dataclass
class GraftShardWriter:
    shards_dir: Path
    index: int
    jpeg_quality: int = 90
    rows: list[dict[str, Any]] = field(default_factory=list)
    photo_errors: Counter = field(default_factory=Counter)
    _started: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        self.shards_dir.mkdir(parents=True, exist_ok=True)
        self._paths = shard_paths(self.shards_dir, self.index)
        self._tar_tmp = temp_path(self._paths["tar"])
        self._stream = open(self._tar_tmp, "wb")  # noqa: SIM115 - closed in close()/abort()
        self._tar = SampleTarWriter(self._stream, mtime=TAR_MTIME)
        self._keys: set[str] = set()

    def _row(self, key: str, **values: Any) -> dict[str, Any]:
        if "." in key:
            raise ValueError(f"sample key {key!r} contains a dot; keys must not (webdataset splits on it)")
        if key in self._keys:
            raise ValueError(f"sample key {key!r} written twice to shard {self.index}")
        self._keys.add(key)
        row: dict[str, Any] = dict.fromkeys(ROW_SCHEMA.names)
        row.update(key=key, shard=self.index, error_code="", error_message="")
        row.update({k: v for k, v in values.items() if k in row})
        return row

    def add_sample(self, key: str, sat: bytes, photos: list[bytes | None], meta: dict[str, Any],
                   row: dict[str, Any]) -> None:
        """One tile: the satellite JPEG, the photos (None = not available) and the metadata."""
        r = self._row(key, **row, status="ok")
        sample: dict[str, Any] = {"__key__": key, "sat.jpg": sat}
        n = 0
        for i, data in enumerate(photos):
            if data is not None:
                sample[f"g{i:02d}.jpg"] = data
                n += len(data)
        sample["json"] = json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8")
        self._tar.write(sample)
        r.update(sat_bytes=len(sat), photo_bytes=n)
        self.rows.append(r)

    def add_failure(self, key: str, code: str, message: str, row: dict[str, Any]) -> None:
        self.rows.append(self._row(key, **row, status="failed", error_code=code, error_message=message))

    def stats(self) -> dict[str, Any]:
        tally = Counter(r["error_code"] for r in self.rows if r["status"] == "failed")
        n_ok = sum(r["status"] == "ok" for r in self.rows)
        return {
            "shard": self.index, "count": len(self.rows), "successes": n_ok, "failed": len(self.rows) - n_ok,
            "errors": dict(sorted(tally.items())), "photo_errors": dict(sorted(self.photo_errors.items())),
            "photos_written": sum(r["n_photos_ok"] or 0 for r in self.rows if r["status"] == "ok"),
            "seconds": round(time.perf_counter() - self._started, 4),
        }

    def close(self) -> dict[str, Any]:
        """Publish tar, then parquet, then stats (the done marker)."""
        self._tar.close()
        self._stream.close()
        stats = self.stats()
        publish_shard(self._paths, self._tar_tmp, pa.Table.from_pylist(self.rows, schema=ROW_SCHEMA), stats)
        return stats

    def abort(self) -> None:
        abort_tar(self._tar, self._stream, self._tar_tmp)


def read_rows(shards_dir: Path) -> pa.Table:
    tables = [pq.read_table(shard_paths(shards_dir, i)["parquet"]) for i in done_shards(shards_dir)]
    return pa.concat_tables(tables) if tables else ROW_SCHEMA.empty_table()


def shard_urls(shards_dir: Path) -> list[str]:
    return [str(shard_paths(shards_dir, i)["tar"]) for i in done_shards(shards_dir)]


__all__ = ["TMP_MARK", "done_shards", "is_done", "read_rows", "shard_paths", "sweep_temporaries"]
