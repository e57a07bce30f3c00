from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from shapely.geometry import Point

from pipeline.records import Chip, ChipRequest, OsmObject, Pair
from storage import shards as sh


def _pair(i: int, rng: np.random.Generator) -> Pair:
    obj = OsmObject("node", 1000 + i, {"amenity": "fountain"}, Point(10.0 + i * 1e-4, 50.0))
    req = ChipRequest(
        key=obj.key, osm_type="node", osm_id=obj.osm_id, bbox=(9.99, 49.99, 10.01, 50.01),
        crs="EPSG:32632", bounds=(0.0, 0.0, 32.0, 32.0), width=32, height=32, gsd=1.0,
        collection="local", seed=0,
    )
    px = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    chip = Chip(req, px, source="local", collection="local", image_id="a.tif")
    return Pair(obj.key, obj, chip, {"amenity": "fountain"}, "amenity of fountain", "amenity of fountain")


def test_writer_publishes_tar_parquet_stats(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    w = sh.ShardWriter(tmp_path, 3, jpeg_quality=90)
    for i in range(4):
        w.add_pair(_pair(i, rng))
    w.add_failure("w7", "way", 7, "no imagery covers this object: local:/x", error_code="no_imagery")
    w.add_failure("w8", "way", 8, "something odd")  # no code: tallied as unknown, never by its text
    assert not sh.is_done(tmp_path, 3)  # nothing visible before close
    stats = w.close()
    assert sh.is_done(tmp_path, 3)
    assert stats["successes"] == 4 and stats["failed"] == 2
    assert stats["errors"] == {"no_imagery": 1, "unknown": 1}
    rows = pq.read_table(tmp_path / "00003.parquet").to_pylist()
    assert [r["status"] for r in rows] == ["ok"] * 4 + ["failed"] * 2
    assert [r["error_code"] for r in rows] == [None] * 4 + ["no_imagery", "unknown"]
    samples = list(sh.iter_samples(tmp_path))
    assert [s["key"] for s in samples] == ["n1000", "n1001", "n1002", "n1003"]
    img = Image.open(io.BytesIO(samples[0]["jpg"]))
    assert img.size == (32, 32)
    assert samples[0]["json"]["osm_id"] == 1000 and samples[0]["txt"] == "amenity of fountain"
    assert not [p for p in tmp_path.iterdir() if sh.TMP_MARK in p.name]


def test_writer_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        w = sh.ShardWriter(tmp_path / name, 0)
        rng = np.random.default_rng(1)
        for i in range(3):
            w.add_pair(_pair(i, rng))
        w.close()
    assert (tmp_path / "a/00000.tar").read_bytes() == (tmp_path / "b/00000.tar").read_bytes()


def test_duplicate_and_dotted_keys_rejected(tmp_path: Path) -> None:
    w = sh.ShardWriter(tmp_path, 0)
    w.add_failure("n1", "node", 1, "x: y")
    with pytest.raises(ValueError, match="twice"):
        w.add_failure("n1", "node", 1, "x: y")
    with pytest.raises(ValueError, match="dot"):
        w.add_failure("n.1", "node", 1, "x: y")
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_abort_and_sweep_leave_no_partial_shard(tmp_path: Path) -> None:
    w = sh.ShardWriter(tmp_path, 0)
    w.add_pair(_pair(0, np.random.default_rng(0)))
    # Simulate a killed process: a temporary left behind, no stats file.
    (tmp_path / f"00000.parquet{sh.TMP_MARK}999").write_text("junk")
    assert not sh.is_done(tmp_path, 0)
    w.abort()
    assert sh.sweep_temporaries(tmp_path) == 1
    assert list(tmp_path.iterdir()) == []
    assert sh.read_rows(tmp_path).num_rows == 0


def test_tar_writer_matches_webdataset_byte_for_byte() -> None:
    import webdataset as wds

    from storage.tar import SampleTarWriter

    samples = [{"__key__": "n1", "jpg": b"\xff\xd8abc", "txt": "caf\u00e9", "json": b"{}"},
               {"__key__": "w2", "jpg": b"x" * 5000, "txt": "b", "json": b"[]"}]
    theirs = io.BytesIO()
    w = wds.TarWriter(theirs, encoder=False, mtime=0.0)
    for s in samples:
        w.write({k: v.encode() if isinstance(v, str) and k != "__key__" else v for k, v in s.items()})
    w.close()
    ours = io.BytesIO()
    t = SampleTarWriter(ours, mtime=0.0)
    for s in samples:
        t.write(s)
    t.close()
    assert ours.getvalue() == theirs.getvalue()


def test_building_imports_no_torch() -> None:
    import subprocess
    import sys

    code = "import sys, pipeline.build, storage.shards; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"  # writing shards needs no tensors; workers stay small and start fast
