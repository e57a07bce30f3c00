"""S2-100K's layout (``index.csv`` + ``images/patch_N.tif``) plus webdataset shards.

Patches are COGs (LZW, horizontal predictor, one 256×256 block, pixel-interleaved, as
SatCLIP's ``download_s2.py`` writes them) with the provenance in the GeoTIFF tags. Each
shard publishes ``NNNNN.tar`` (``{key}.tif`` + ``{key}.json``) and ``NNNNN.parquet`` (one
row per planned patch, failures included) before ``NNNNN_stats.json``, its done marker.
"""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# numpy.ma is imported here, once: rasterio's write imports it lazily, and that lazy import from several
# sampler threads at once trips a CPython 3.11 race ("SystemError: AST constructor recursion depth
# mismatch", seen in CI).
import numpy as np
import numpy.ma
import pyarrow as pa
import pyarrow.parquet as pq
from rasterio.io import MemoryFile
from rasterio.transform import Affine

from pipeline.satclip.scenes import S2_BANDS, Scene
from storage.atomic import publishing, temp_path
from storage.shards import abort_tar, done_shards, publish_shard, shard_paths
from storage.tar import SampleTarWriter

ROW_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("index", pa.int64()),
        ("shard", pa.int32()),
        ("fn", pa.string()),
        ("status", pa.string()),
        ("error_code", pa.string()),
        ("error_message", pa.string()),
        ("lon", pa.float64()),
        ("lat", pa.float64()),
        ("scene_id", pa.string()),
        ("datetime", pa.string()),
        ("cloud_cover", pa.float64()),
        ("mgrs_tile", pa.string()),
        ("platform", pa.string()),
        ("source", pa.string()),
        ("crs", pa.string()),
        ("col_off", pa.int32()),
        ("row_off", pa.int32()),
        ("empty_fraction", pa.float64()),
        ("zero_fraction", pa.float64()),
        ("tries", pa.int32()),
        ("tif_bytes", pa.int64()),
    ]
)
INDEX_COLUMNS = (
    "fn",
    "lon",
    "lat",
    "scene_id",
    "datetime",
    "cloud_cover",
    "mgrs_tile",
    "platform",
    "crs",
    "col_off",
    "row_off",
)


def patch_name(index: int) -> str:
    return f"patch_{index}"


def provenance_tags(scene: Scene, lon: float, lat: float, col_off: int, row_off: int) -> dict[str, str]:
    return {
        "scene_id": scene.scene_id,
        "datetime": scene.datetime,
        "cloud_cover": "" if scene.cloud_cover is None else repr(scene.cloud_cover),
        "mgrs_tile": scene.mgrs_tile,
        "platform": scene.platform,
        "source": scene.source,
        "lon": repr(lon),
        "lat": repr(lat),
        "col_off": str(col_off),
        "row_off": str(row_off),
    }


def encode_patch(pixels: np.ndarray, scene: Scene, col_off: int, row_off: int, tags: dict[str, str]) -> bytes:
    """The patch as COG bytes on the scene's own grid (CRS and 10 m transform kept)."""
    count, height, width = pixels.shape
    transform = Affine(*scene.transform) * Affine.translation(col_off, row_off)
    with MemoryFile() as mf:
        with mf.open(
            driver="COG",
            width=width,
            height=height,
            count=count,
            dtype="uint16",
            crs=scene.crs,
            transform=transform,
            compress="LZW",
            predictor=2,
            blocksize=256,
            overviews="NONE",
        ) as ds:
            ds.write(pixels)
            ds.update_tags(**tags)
            for i, band in enumerate(S2_BANDS[:count]):
                ds.set_band_description(i + 1, band)
        return bytes(mf.read())


def is_done(shards_dir: Path, shard: int) -> bool:
    return shard_paths(shards_dir, shard)["stats"].is_file()


@dataclass
class PatchShard:
    """One shard's patches (images/ written as they come) and rows; :meth:`close` publishes it."""

    out: Path
    shard: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejected: Counter = field(default_factory=Counter)
    _started: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        self.shards_dir = self.out / "shards"
        self.shards_dir.mkdir(parents=True, exist_ok=True)
        (self.out / "images").mkdir(parents=True, exist_ok=True)
        self._paths = shard_paths(self.shards_dir, self.shard)
        self._tar_tmp = temp_path(self._paths["tar"])
        self._stream = open(self._tar_tmp, "wb")  # noqa: SIM115 - closed in close()/abort()
        self._tar = SampleTarWriter(self._stream, mtime=0.0)

    def add_patch(self, row: dict[str, Any], tif: bytes) -> None:
        with publishing(self.out / "images" / row["fn"]) as tmp:
            tmp.write_bytes(tif)
        meta = {k: row[k] for k in ROW_SCHEMA.names if k in row and k != "tif_bytes"}
        self._tar.write({"__key__": row["key"], "tif": tif, "json": json.dumps(meta, sort_keys=True).encode()})
        self.rows.append({**row, "status": "ok", "error_code": "", "error_message": "", "tif_bytes": len(tif)})

    def add_failure(self, row: dict[str, Any], code: str, message: str) -> None:
        self.rows.append({**row, "status": "failed", "error_code": code, "error_message": message})

    def stats(self) -> dict[str, Any]:
        failed = Counter(r["error_code"] for r in self.rows if r["status"] == "failed")
        ok = sum(r["status"] == "ok" for r in self.rows)
        return {
            "shard": self.shard,
            "count": len(self.rows),
            "successes": ok,
            "failed": len(self.rows) - ok,
            "errors": dict(sorted(failed.items())),
            "rejected_windows": dict(sorted(self.rejected.items())),
            "seconds": round(time.perf_counter() - self._started, 3),
        }

    def close(self) -> dict[str, Any]:
        self._tar.close()
        self._stream.close()
        rows = [{k: r.get(k) for k in ROW_SCHEMA.names} for r in self.rows]
        stats = self.stats()
        publish_shard(self._paths, self._tar_tmp, pa.Table.from_pylist(rows, schema=ROW_SCHEMA), stats)
        return stats

    def abort(self) -> None:
        abort_tar(self._tar, self._stream, self._tar_tmp)


def read_rows(out: Path) -> pa.Table:
    tables = [pq.read_table(shard_paths(out / "shards", i)["parquet"]) for i in done_shards(out / "shards")]
    return pa.concat_tables(tables) if tables else ROW_SCHEMA.empty_table()


def write_index(out: Path) -> int:
    """``index.csv`` (S2-100K's ``fn, lon, lat`` first, provenance after) from every done shard."""
    table = read_rows(out).to_pylist()
    ok = sorted((r for r in table if r["status"] == "ok"), key=lambda r: r["index"])
    with publishing(out / "index.csv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(INDEX_COLUMNS)
        for r in ok:
            writer.writerow(
                ["" if r[c] is None else (repr(r[c]) if isinstance(r[c], float) else r[c]) for c in INDEX_COLUMNS]
            )
    return len(ok)
