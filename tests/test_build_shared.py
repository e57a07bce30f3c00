"""The issue's own check on real data: OAM orthophotos with the OSM buildings over them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image
from shapely.geometry import box

from pipeline.build import BuildInputs, build
from pipeline.config import load_config
from storage import shards as sh
from storage.objects_table import read_objects


@pytest.mark.shared_data
@pytest.mark.slow
@pytest.mark.parametrize("area", ["area2", "area3"])
def test_build_over_real_orthophotos(shared_data: Path, tmp_path: Path, area: str) -> None:
    oam = shared_data / "imagery" / "oam"
    out = tmp_path / area
    cfg = load_config(max_objects=60)
    summary = build(BuildInputs(osm=str(oam / f"{area}_buildings.osm"), imagery=f"local:{oam}", out=str(out)),
                    cfg, log=lambda _m: None)
    rows = sh.read_rows(out / "shards").to_pylist()
    assert len(rows) == summary["planned"] == 60  # every planned object is accounted for
    assert all(r["status"] in ("ok", "failed") for r in rows)
    assert all(r["error_message"] for r in rows if r["status"] == "failed")
    objs = {o.key: o for o in read_objects(out / "objects.parquet")}
    samples = list(sh.iter_samples(out / "shards"))
    assert len(samples) >= 10, f"only {len(samples)} samples; failures: {summary['errors']}"
    for s in samples:
        meta = s["json"]
        img = Image.open(io.BytesIO(s["jpg"]))
        img.load()
        assert img.size == (meta["width"], meta["height"])
        assert box(*meta["bbox"]).contains(objs[s["key"]].geometry), s["key"]
        assert "building" in meta["caption_single"] and "building" in meta["caption_multi"]
        assert meta["gsd"] < 1.0 and meta["image_id"].startswith(area)
        # Real pixels, not an empty window.
        lo, hi = img.convert("L").getextrema()
        assert hi - lo > 20
    run = json.loads((out / "run.json").read_text())
    assert run["summary"]["written"] == len(samples)
