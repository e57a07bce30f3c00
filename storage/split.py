"""``skyscript split``: a test split by spatial blocks, deterministic per seed.

Chips are grouped into square blocks of ``block_deg`` degrees by their centre; whole blocks are
drawn (seeded shuffle) until the test split holds ``test_frac`` of the samples. Chips near a
block edge still reach into the next block, so a training chip whose footprint, widened by the
largest chip's half-size, touches a test block is marked ``buffer`` and used by neither split:
no training chip then overlaps any test chip's ground.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.errors import BadInputError
from storage.atomic import publishing
from storage.scores import require_build, shard_stem

SPLIT_FILE = "split.parquet"


@dataclass(frozen=True)
class SplitConfig:
    test_frac: float = 0.05
    block_deg: float = 0.02
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.test_frac < 1:
            raise BadInputError(f"--test-frac {self.test_frac}: give a fraction between 0 and 1 (e.g. 0.05)")
        if not 0 < self.block_deg <= 10:
            raise BadInputError(f"--block-deg {self.block_deg}: give a block size in degrees, e.g. 0.02")


def _rows(out: Path) -> pa.Table:
    tables = []
    for s in require_build(out):
        t = pq.read_table(out / "shards" / f"{shard_stem(s)}.parquet", columns=["key", "status", "lon", "lat", "bbox"])
        t = t.filter(pc.equal(t["status"], "ok"))
        tables.append(t.append_column("shard", pa.array([s] * t.num_rows, pa.int32())))
    return pa.concat_tables(tables)


def assign_blocks(lon: np.ndarray, lat: np.ndarray, block_deg: float) -> tuple[np.ndarray, np.ndarray]:
    return np.floor(lon / block_deg).astype(np.int64), np.floor(lat / block_deg).astype(np.int64)


def make_split(out: Path, cfg: SplitConfig) -> dict[str, Any]:
    """Write ``OUT/split.parquet`` (key, shard, split, block) and ``OUT/split.json``; returns counts."""
    out = Path(out)
    t = _rows(out)
    lon = t["lon"].to_numpy(zero_copy_only=False).astype(np.float64)
    lat = t["lat"].to_numpy(zero_copy_only=False).astype(np.float64)
    if t.num_rows == 0 or np.isnan(lon).all():
        raise BadInputError(f"{str(out)!r} has no successful samples with a location to split")
    bx, by = assign_blocks(lon, lat, cfg.block_deg)
    blocks, inverse, counts = np.unique(np.stack([bx, by], 1), axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    order = np.random.default_rng(cfg.seed).permutation(len(blocks))
    target = cfg.test_frac * t.num_rows
    cum = np.cumsum(counts[order])
    n_test_blocks = int(np.searchsorted(cum, target) + 1)
    n_test_blocks = min(n_test_blocks, len(blocks) - 1) if len(blocks) > 1 else 0
    is_test_block = np.zeros(len(blocks), bool)
    is_test_block[order[:n_test_blocks]] = True
    test = is_test_block[inverse]

    # Buffer: a training chip's footprint widened by the largest half-chip touches a test block.
    bbox = np.array([b if b is not None else [x, y, x, y] for b, x, y in zip(t["bbox"].to_pylist(), lon, lat,
                                                                              strict=True)], dtype=np.float64)
    half = float(np.nanmax(np.maximum(bbox[:, 2] - bbox[:, 0], bbox[:, 3] - bbox[:, 1]))) / 2
    test_set = {(int(a), int(b)) for a, b in blocks[is_test_block]}
    x0, y0 = assign_blocks(bbox[:, 0] - half, bbox[:, 1] - half, cfg.block_deg)
    x1, y1 = assign_blocks(bbox[:, 2] + half, bbox[:, 3] + half, cfg.block_deg)
    buffer = np.zeros(t.num_rows, bool)
    for i in np.flatnonzero(~test):
        buffer[i] = any((a, b) in test_set for a in range(x0[i], x1[i] + 1) for b in range(y0[i], y1[i] + 1))
    split = np.where(test, "test", np.where(buffer, "buffer", "train"))
    block_ids = [f"{a}_{b}" for a, b in zip(bx, by, strict=True)]
    table = pa.table({"key": t["key"], "shard": t["shard"], "split": pa.array(split.tolist()),
                      "block": pa.array(block_ids)})
    path = out / SPLIT_FILE
    with publishing(path) as tmp:
        pq.write_table(table, tmp)
    res = {
        "path": str(path), "test_frac": cfg.test_frac, "block_deg": cfg.block_deg, "seed": cfg.seed,
        "blocks": len(blocks), "test_blocks": n_test_blocks, "buffer_deg": half,
        "train": int((split == "train").sum()), "test": int(test.sum()), "buffer": int(buffer.sum()),
    }
    with publishing(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(res, indent=1, sort_keys=True), encoding="utf-8")
    return res


def read_split(out: Path) -> pa.Table | None:
    p = Path(out) / SPLIT_FILE
    return pq.read_table(p) if p.is_file() else None
