"""File source on synthetic data (always runs) and on ../shared/data/osm (when present)."""

from __future__ import annotations

from pathlib import Path

import osmium
import pytest
import shapely

from pipeline.errors import BadInputError, InputFileError
from pipeline.geo import BBox
from pipeline.osm import make_osm_source
from pipeline.records import OsmObject
from storage.objects_table import read_objects, write_objects
from tests.osm.synth import write_sample


def by_key(objs: list[OsmObject]) -> dict[str, OsmObject]:
    return {o.key: o for o in objs}


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return write_sample(tmp_path)


def test_geometry_rules_on_synthetic_world(sample: Path) -> None:
    objs = by_key(list(make_osm_source(str(sample)).objects()))
    assert set(objs) == {"n1", "w100", "w101", "w102", "w103", "w104", "w105", "w109", "r300", "r301"}
    assert objs["n1"].geometry.geom_type == "Point"
    assert objs["w100"].geometry.geom_type == "Polygon"  # building: area
    assert objs["w101"].geometry.geom_type == "LineString"  # closed highway: ring line
    assert objs["w102"].geometry.geom_type == "Polygon"  # area=yes wins
    assert objs["w103"].geometry.geom_type == "LineString"  # natural=coastline is linear
    bowtie = objs["w104"]
    assert bowtie.ok and bowtie.geometry.is_valid and bowtie.geometry.area > 0
    forest = objs["r300"]
    assert forest.osm_type == "relation" and forest.geometry.geom_type == "MultiPolygon"
    assert forest.tags == {"landuse": "forest"}
    assert forest.geometry.area == pytest.approx(0.1**2 - 0.02**2)  # the inner ring is a hole
    for key, words in {"w105": "missing", "w109": "distinct", "r301": "could not be assembled"}.items():
        assert objs[key].status == "failed" and words in objs[key].error_message
        assert objs[key].geometry is None


@pytest.mark.parametrize("name", ["sample.osm.bz2", "sample.osm.gz"])
def test_compressed_xml_reads_the_same(tmp_path: Path, sample: Path, name: str) -> None:
    plain = {o.key for o in make_osm_source(str(sample)).objects()}
    packed = write_sample(tmp_path, name)
    assert {o.key for o in make_osm_source(f"pbf:{packed}").objects()} == plain


def test_pbf_round_trip(tmp_path: Path, sample: Path) -> None:
    pbf = tmp_path / "sample.osm.pbf"
    with osmium.SimpleWriter(str(pbf)) as writer:
        for o in osmium.FileProcessor(str(sample)):
            writer.add(o)
    a = by_key(list(make_osm_source(str(sample)).objects()))
    b = by_key(list(make_osm_source(f"pbf:{pbf}").objects()))
    assert set(a) == set(b)
    for k in a:
        assert a[k].tags == b[k].tags and a[k].status == b[k].status
        if a[k].geometry is not None:
            assert a[k].geometry.equals_exact(b[k].geometry, 1e-7)


def test_bbox_keeps_intersecting_objects(sample: Path) -> None:
    src = make_osm_source(str(sample))
    keys = {o.key for o in src.objects(BBox(10.005, 49.99, 10.025, 50.02))}
    assert keys == {"w100", "w101"}  # the bench (10.0, 50.0) lies west of the box
    assert {o.key for o in src.objects(BBox(12.05, 52.05, 12.06, 52.06))} == {"r300"}
    assert not {o.key for o in src.objects(BBox(12.035, 52.035, 12.045, 52.045))}  # inside the hole


def test_objects_table_source_round_trip(tmp_path: Path, sample: Path) -> None:
    objs = list(make_osm_source(str(sample)).objects())
    table = tmp_path / "objects.parquet"
    assert write_objects(table, objs) == len(objs)
    back = list(make_osm_source(str(table)).objects())
    assert [o.key for o in back] == [o.key for o in objs]
    assert [o.status for o in read_objects(table)] == [o.status for o in objs]
    inside = list(make_osm_source(str(table)).objects(BBox(9.9, 49.9, 10.005, 50.005)))
    assert {o.key for o in inside} == {"n1", "w100"}


def test_bad_specs_and_files(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"nope\.osm\.pbf"):
        make_osm_source(str(tmp_path / "nope.osm.pbf"))
    with pytest.raises(InputFileError, match=r"nope\.parquet"):
        make_osm_source(str(tmp_path / "nope.parquet"))
    with pytest.raises(BadInputError, match="unknown OSM source"):
        make_osm_source("ftp:somewhere")
    empty = tmp_path / "empty.osm"
    empty.write_text("")
    with pytest.raises(InputFileError, match="empty"):
        make_osm_source(str(empty))


@pytest.mark.parametrize("content", [b"this is not osm data at all", b"<osm><node id='1' lat='x'"])
def test_malformed_file_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.osm.pbf" if content.startswith(b"this") else tmp_path / "bad.osm"
    bad.write_bytes(content)
    with pytest.raises(InputFileError, match=r"bad\.osm"):
        list(make_osm_source(str(bad)).objects())


def test_shared_extract_objects_are_valid(shared_data: Path) -> None:
    pbf = shared_data / "osm" / "kotka.osm.pbf"
    objs = list(make_osm_source(f"pbf:{pbf}").objects())
    ok = [o for o in objs if o.ok]
    assert len(ok) > 2000
    assert all(o.geometry.is_valid for o in ok)
    assert sum(o.geometry.geom_type == "Polygon" and "building" in o.tags for o in ok) > 2000
    assert all(o.error_message for o in objs if not o.ok)
    west, south, east, north = shapely.total_bounds([o.geometry for o in ok])
    box = BBox(west, south, (west + east) / 2, (south + north) / 2)
    part = list(make_osm_source(str(pbf)).objects(box))
    assert 0 < len(part) < len(objs)
    assert all(o.geometry.intersects(shapely.box(*box.as_tuple())) for o in part if o.ok)


def test_file_backed_node_index_gives_the_same_objects(tmp_path: Path, sample: Path) -> None:
    mem = {o.key: o.geometry for o in make_osm_source(str(sample)).objects()}
    disk = {
        o.key: o.geometry for o in make_osm_source(str(sample), index=f"sparse_file_array,{tmp_path}/n.idx").objects()
    }
    assert mem.keys() == disk.keys()
    assert all((mem[k] is None and disk[k] is None) or mem[k].equals(disk[k]) for k in mem)
    with pytest.raises(BadInputError, match="unknown node index"):
        make_osm_source(str(sample), index="bogus")
    with pytest.raises(BadInputError, match="stores locations in a file"):
        make_osm_source(str(sample), index="dense_file_array")


def test_negative_ids_are_explained(tmp_path: Path) -> None:
    from tests.osm.synth import osm_xml

    path = tmp_path / "josm.osm"
    path.write_text(
        osm_xml([(-1, 1.0, 1.0, {"amenity": "bench"}), (-2, 1.1, 1.0, {})], [(-5, [-1, -2], {"highway": "path"})])
    )
    objs = {o.key: o for o in make_osm_source(str(path)).objects()}
    assert objs["nm1"].ok  # a node carries its own location
    assert objs["wm5"].status == "failed" and "osmium renumber" in objs["wm5"].error_message
