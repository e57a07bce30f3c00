"""``skyscript osm``, ``plan cells``, ``plan targeted``, ``tags count``: outputs and one-line errors."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.osm.cells import CellPlan, write_cells
from storage.objects_table import read_objects
from tests.osm.conftest import synthetic_elements
from tests.osm.overpass_server import OverpassFixture
from tests.osm.synth import write_sample

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_osm_tags_count_pipeline(tmp_path: Path) -> None:
    sample = write_sample(tmp_path)
    out = tmp_path / "objects.parquet"
    code, text = run("osm", "--source", f"pbf:{sample}", "--out", str(out))
    assert code == 0, text
    assert len(read_objects(out)) == 10
    code, text = run("osm", "--source", str(sample), "--tags", "building=yes,natural=*", "--out", str(out))
    assert code == 0, text
    assert {o.key for o in read_objects(out)} == {"w100", "w103", "r301"}
    code, text = run("tags", "count", str(out))
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {(r["tag"], r["count"]) for r in rows} >= {("building=yes", "1"), ("natural=*", "2")}
    code, text = run("tags", "count", str(out), "--out", str(tmp_path / "counts.csv"))
    assert code == 0 and (tmp_path / "counts.csv").is_file()


def test_overpass_cli_with_bbox(tmp_path: Path) -> None:
    out = tmp_path / "o.parquet"
    with OverpassFixture(synthetic_elements()) as fx:
        code, text = run(
            "osm",
            "--source",
            f"overpass:{fx.endpoint}",
            "--bbox",
            "23.98,59.98,24.01,60.01",
            "--out",
            str(out),
            "--no-cache",
        )
    assert code == 0, text
    assert len(read_objects(out)) == 6 * 6 * 2 + 2


def test_plan_commands(tmp_path: Path) -> None:
    cells = tmp_path / "cells.parquet"
    code, text = run("plan", "cells", "--n", "25", "--seed", "3", "--bbox", "20,60,30,65", "--out", str(cells))
    assert code == 0, text
    counts = tmp_path / "counts.csv"
    counts.write_text("tag,key,value,count\namenity=fountain,amenity,fountain,3\n")
    cands = tmp_path / "cands.txt"
    cands.write_text("amenity=fountain\nman_made=lighthouse\n")
    targeted = tmp_path / "targeted.parquet"
    code, text = run(
        "plan",
        "targeted",
        "--counts",
        str(counts),
        "--candidates",
        str(cands),
        "--cells",
        str(cells),
        "--bbox",
        "20,60,30,65",
        "--out",
        str(targeted),
    )
    assert code == 0, text
    assert "2 rare tags" in text


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["osm", "--source", "pbf:/nope/x.osm.pbf", "--bbox", "1,2,3,4", "--out", "o.parquet"], "not found"),
        (["osm", "--source", "SAMPLE", "--bbox", "3,2,1,4", "--out", "o.parquet"], "antimeridian"),
        (["osm", "--source", "SAMPLE", "--tags", "a==b", "--out", "o.parquet"], "bad tag"),
        (["osm", "--source", "SAMPLE", "--cells", "none.parquet", "--out", "o.parquet"], "cells file not found"),
        (["osm", "--source", "overpass:http://127.0.0.1:9/api", "--out", "o.parquet"], "never fetches"),
        (["osm", "--source", "gopher:x", "--bbox", "1,2,3,4", "--out", "o.parquet"], "unknown OSM source"),
        (["plan", "cells", "--n", "5", "--bbox", "-40,30,-39.9,30.1", "--out", "c.parquet"], "0 land cells"),
        (["plan", "cells", "--n", "5", "--region", "POLYGON((", "--out", "c.parquet"], "neither a GeoJSON"),
        (["tags", "count", "missing.parquet"], "not found"),
        (["osm", "--source", "SAMPLE", "--out", "/proc/nope/o.parquet"], "cannot create the folder"),
        (["plan", "cells", "--n", "5", "--out", "."], "not a writable file path"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list, words: str) -> None:
    monkeypatch.chdir(tmp_path)
    sample = write_sample(tmp_path)
    code, text = run(*[str(sample) if a == "SAMPLE" else a for a in args])
    assert code == 2
    assert "Traceback" not in text and words in text and text.strip().startswith("error:")
    assert not (tmp_path / "o.parquet").exists()


def test_overpass_cli_keeps_going_and_lists_failed_queries(tmp_path: Path) -> None:
    out, cells = tmp_path / "o.parquet", tmp_path / "cells.parquet"
    ix, iy = np.meshgrid(np.arange(2398, 2401), np.arange(5998, 6001))
    write_cells(cells, CellPlan(0.01, ix.ravel(), iy.ravel()))
    with OverpassFixture(synthetic_elements()) as fx:
        fx.state.faults = ["504", "504"]  # the first query fails both of its attempts
        code, text = run(
            "osm",
            "--source",
            f"overpass:{fx.endpoint}",
            "--cells",
            str(cells),
            "--out",
            str(out),
            "--no-cache",
            "--slots",
            "1",
            "--attempts",
            "2",
        )
        assert fx.state.counts["interpreter"] == 9 + 1
    assert code == 2 and "1 Overpass queries failed" in text and "Traceback" not in text
    listing = tmp_path / "o.parquet.failed_queries.txt"
    assert "HTTP 504" in listing.read_text() and "[timeout:" in listing.read_text()
    assert read_objects(out)  # the other queries' objects were written
