"""Tag counts (checked against an independent osmium count) and the targeted planner."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import osmium
import pyarrow.parquet as pq
import pytest

from pipeline.errors import BadInputError, InputFileError
from pipeline.geo import BBox
from pipeline.osm import make_osm_source
from pipeline.osm.acquire import acquire
from pipeline.osm.landmask import LandMask
from pipeline.osm.plan import Plan
from pipeline.osm.tagstats import count_table, read_counts, write_counts
from pipeline.osm.targeted import (
    TargetedConfig,
    plan_targeted,
    read_candidates,
    read_targeted,
    write_targeted,
)
from storage.objects_table import write_objects
from tests.osm.synth import write_sample

SKIP = {"created_by", "source", "note", "fixme", "FIXME"}


def independent_counts(path: Path) -> Counter[tuple[str, str]]:
    """Raw pyosmium loop: tagged nodes/ways, and multipolygon/boundary relations (minus ``type``)."""
    counts: Counter[tuple[str, str]] = Counter()
    for o in osmium.FileProcessor(str(path)):
        tags = {t.k: t.v for t in o.tags}
        if o.is_relation() and tags.pop("type", None) not in ("multipolygon", "boundary"):
            continue
        if not any(k not in SKIP for k in tags):
            continue
        for k, v in tags.items():
            counts[(k, v)] += 1
            counts[(k, "*")] += 1
    return counts


def test_counts_on_synthetic_sample(tmp_path: Path) -> None:
    sample = write_sample(tmp_path)
    table = tmp_path / "objects.parquet"
    write_objects(table, make_osm_source(str(sample)).objects())
    counts, n = count_table(table)
    assert n == 10
    assert counts == independent_counts(sample)
    assert counts[("building", "yes")] == 1 and counts[("highway", "*")] == 3
    ok_counts, n_ok = count_table(table, ok_only=True)
    assert n_ok == 7 and ok_counts[("natural", "water")] == 0  # the broken relation is a failed row
    write_counts(tmp_path / "counts.csv", counts)
    assert read_counts(tmp_path / "counts.csv") == counts
    assert read_counts(table) == counts


@pytest.mark.parametrize("name", ["helsinki", "kotka"])
def test_counts_match_independent_count_on_extracts(shared_data: Path, tmp_path: Path, name: str) -> None:
    pbf = shared_data / "osm" / f"{name}.osm.pbf"
    table = tmp_path / "objects.parquet"
    write_objects(table, acquire(make_osm_source(f"pbf:{pbf}"), Plan()))
    counts, n = count_table(table)
    expected = independent_counts(pbf)
    assert counts == expected
    assert n == pq.read_metadata(table).num_rows
    assert counts[("building", "*")] > 500


def test_count_command_reads_osm_files_directly(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    sample = write_sample(tmp_path)
    res = CliRunner().invoke(app, ["tags", "count", str(sample), "--out", str(tmp_path / "c.csv")])
    assert res.exit_code == 0, res.output
    assert read_counts(tmp_path / "c.csv") == independent_counts(sample)


def test_bad_counts_files(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not found"):
        read_counts(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(InputFileError, match="key,value,count"):
        read_counts(bad)
    bad.write_text("tag,key,value,count\nx=y,x,y,many\n")
    with pytest.raises(InputFileError, match="line 2"):
        read_counts(bad)


def test_candidates_from_labels_csv_and_lines(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("tag,groundable,max_gsd\nman_made=lighthouse,yes,\nname=*,no,\nabandoned:*=*,no,\npower=*,yes,\n")
    assert read_candidates(labels) == [("man_made", "lighthouse"), ("power", None)]
    lines = tmp_path / "tags.txt"
    lines.write_text("# rare things\nman_made=lighthouse\n\nleisure=stadium  # big\nman_made=lighthouse\n")
    assert read_candidates(lines) == [("man_made", "lighthouse"), ("leisure", "stadium")]
    lines.write_text("man_made=\n")
    with pytest.raises(BadInputError, match="bad tag"):
        read_candidates(lines)
    lines.write_text("# nothing\n")
    with pytest.raises(BadInputError, match="no candidate tags"):
        read_candidates(lines)


def test_targeted_plan_picks_rare_tags_and_sizes_tiles(tmp_path: Path) -> None:
    land = LandMask()
    counts = Counter({("amenity", "fountain"): 5, ("building", "yes"): 50_000, ("power", "*"): 90})
    cands = [("amenity", "fountain"), ("building", "yes"), ("power", None), ("man_made", "lighthouse")]
    cfg = TargetedConfig(max_count=100, max_objects_per_query=50)
    rows = plan_targeted(counts, cands, sampled_fraction=0.01, cfg=cfg, land=land)
    tags = {r["tag"] for r in rows}
    assert tags == {"amenity=fountain", "power=*", "man_made=lighthouse"}  # building=yes is common
    deg = {r["tag"]: r["tile_deg"] for r in rows}
    assert deg["power=*"] < deg["amenity=fountain"]  # more expected objects → smaller tiles
    ocean = plan_targeted(counts, cands, 0.01, cfg=TargetedConfig(100, 50, keep_ocean=True), land=land)
    kept = {(r["tag"], r["tx"], r["ty"]) for r in rows}
    dropped = {(r["tile_deg"], r["tx"], r["ty"]) for r in ocean if (r["tag"], r["tx"], r["ty"]) not in kept}
    assert kept < {(r["tag"], r["tx"], r["ty"]) for r in ocean} and dropped
    for d, tx, ty in dropped:  # dropped tiles have no land even on a finer grid
        lat, lon = np.meshgrid(np.arange(ty * d, (ty + 1) * d, 0.04), np.arange(tx * d, (tx + 1) * d, 0.04))
        assert not land.is_land(lat.ravel(), lon.ravel()).any()
    path = tmp_path / "targeted.parquet"
    write_targeted(path, rows)
    targets = read_targeted(path)
    assert {t.text for t in targets} == tags
    assert sum(len(t.tiles or ()) for t in targets) == len(rows)


def test_targeted_region_and_bad_fraction() -> None:
    region = BBox(20.0, 59.0, 30.0, 70.0)
    rows = plan_targeted(Counter(), [("man_made", "lighthouse")], 0.5, region=region, land=LandMask())
    assert rows and all(region.west <= r["west"] and r["east"] <= region.east for r in rows)
    with pytest.raises(BadInputError, match="fraction"):
        plan_targeted(Counter(), [("a", "b")], 0.0)
