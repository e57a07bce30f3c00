"""One pass over an extract for a whole plan (cells + targeted tags) equals brute force."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import osmium
import pytest
import shapely

from pipeline.errors import BadInputError
from pipeline.geo import BBox
from pipeline.osm import make_osm_source
from pipeline.osm.acquire import acquire
from pipeline.osm.cells import CellPlan, sample_cells
from pipeline.osm.overpass import OverpassConfig, OverpassSource
from pipeline.osm.plan import Plan, Target
from pipeline.records import OsmObject
from tests.osm.conftest import short_sleep, synthetic_elements
from tests.osm.overpass_server import OverpassFixture
from tests.osm.test_overpass_recorded import extent, write_pbf


def brute_force(objs: list[OsmObject], plan: Plan) -> set[str]:
    """Independent statement of the plan's meaning for objects with a geometry."""
    d = plan.cells.cell_deg if plan.cells else 0.0
    boxes = [shapely.box(i * d, j * d, (i + 1) * d, (j + 1) * d) for i, j in (plan.cells.pairs() if plan.cells else [])]
    keys = set()
    for o in objs:
        if o.geometry is None:
            continue
        in_cell = any(o.geometry.intersects(b) for b in boxes)
        tagged = any(t.key in o.tags and (t.value is None or o.tags[t.key] == t.value) for t in plan.targets)
        if in_cell or tagged:
            keys.add(o.key)
    return keys


def counting_processor(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    made: list[int] = []
    real = osmium.FileProcessor

    def spy(*args: object, **kw: object) -> osmium.FileProcessor:
        made.append(1)
        return real(*args, **kw)

    monkeypatch.setattr("pipeline.osm.reader.osmium.FileProcessor", spy)
    return made


def test_one_pass_plan_on_synthetic_extract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elements = synthetic_elements(n=8)
    pbf = write_pbf(elements, tmp_path / "syn.osm.pbf")
    src = make_osm_source(f"pbf:{pbf}")
    everything = list(src.objects())
    cells = sample_cells(15, 0.001, seed=1, region=extent(elements), land_only=False)
    plan = Plan(cells=cells, targets=(Target("natural", "wood"),))
    made = counting_processor(monkeypatch)
    got = [o.key for o in acquire(src, plan)]
    assert len(made) <= 2  # one streaming pass (+ one over relations only, for failures): not one per cell
    assert len(got) == len(set(got))
    assert set(got) == brute_force(everything, plan)
    assert "r7" in got and 0 < len(got) < len(everything)


def test_plan_with_bbox_and_tags(tmp_path: Path) -> None:
    elements = synthetic_elements(n=4)
    src = make_osm_source(str(write_pbf(elements, tmp_path / "s.osm.pbf")))
    plan = Plan(targets=(Target("amenity", None),), bbox=BBox(24.0, 60.0, 24.002, 60.002))
    got = {o.key for o in acquire(src, plan)}
    assert got and all(k.startswith("n") for k in got)
    assert len(got) == 4  # the benches of the 2 × 2 buildings inside the box


def test_tiled_targets_only_inside_their_tiles(tmp_path: Path) -> None:
    elements = synthetic_elements(n=4)
    src = make_osm_source(str(write_pbf(elements, tmp_path / "s.osm.pbf")))
    inside = Target("building", "yes", tile_deg=1.0, tiles=frozenset({(24, 60)}))
    outside = Target("building", "yes", tile_deg=1.0, tiles=frozenset({(25, 60)}))
    assert len(list(acquire(src, Plan(targets=(inside,))))) == 16
    assert not list(acquire(src, Plan(targets=(outside,))))


def test_overpass_plan_matches_extract_plan(tmp_path: Path, fast_config: OverpassConfig) -> None:
    elements = synthetic_elements(n=6)
    pbf_src = make_osm_source(str(write_pbf(elements, tmp_path / "s.osm.pbf")))
    cells = sample_cells(10, 0.002, seed=2, region=extent(elements), land_only=False)
    plan = Plan(cells=cells, targets=(Target("natural", "wood"),), tag_tile_deg=30.0)
    with OverpassFixture(elements) as fx:
        fx.state.faults = ["429", "504", "truncated"]
        ovp = OverpassSource(fast_config.with_endpoints([fx.endpoint]), sleep=short_sleep, rng=random.Random(0))
        from_overpass = {o.key for o in acquire(ovp, plan)}
        assert fx.state.counts["interpreter"] >= 10 + 3  # one request per cell, the tag's tiles, the faults
    assert from_overpass == {o.key for o in acquire(pbf_src, plan)}
    assert not ovp.failures


def test_empty_plan_means_everything_for_files_only(tmp_path: Path) -> None:
    src = make_osm_source(str(write_pbf(synthetic_elements(n=2), tmp_path / "s.osm.pbf")))
    assert len(list(acquire(src, Plan()))) == len(list(src.objects()))
    with pytest.raises(BadInputError, match="never fetches the planet"):
        list(acquire(OverpassSource(OverpassConfig(endpoints=("http://127.0.0.1:9/api",))), Plan()))


def test_one_pass_plan_on_helsinki(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_osm_source(str(shared_data / "osm" / "helsinki.osm.pbf"))
    everything = list(src.objects())
    box = BBox(24.935, 60.164, 24.953, 60.179)
    rng = np.random.default_rng(0)
    ix = np.unique(np.floor(rng.uniform(box.west, box.east, 40) / 0.002).astype(np.int64))
    iy = np.floor(rng.uniform(box.south, box.north, len(ix)) / 0.002).astype(np.int64)
    plan = Plan(cells=CellPlan(0.002, ix, iy), targets=(Target("amenity", "fountain"), Target("power", None)))
    made = counting_processor(monkeypatch)
    got = [o.key for o in acquire(src, plan)]
    assert len(made) <= 3
    by_key = {o.key: o for o in everything}
    assert {k for k in got if by_key[k].ok} == brute_force(everything, plan)
    failed = [by_key[k] for k in got if not by_key[k].ok]
    assert failed and all("missing from the input" in o.error_message for o in failed)


def test_plan_over_an_objects_table(tmp_path: Path) -> None:
    from storage.objects_table import write_objects

    elements = synthetic_elements(n=6)
    pbf_src = make_osm_source(str(write_pbf(elements, tmp_path / "s.osm.pbf")))
    table = tmp_path / "objects.parquet"
    write_objects(table, pbf_src.objects())
    cells = sample_cells(12, 0.001, seed=4, region=extent(elements), land_only=False)
    plan = Plan(cells=cells, targets=(Target("natural", "wood"),))
    from_table = {o.key for o in acquire(make_osm_source(str(table)), plan)}
    assert from_table == {o.key for o in acquire(pbf_src, plan)} and from_table
