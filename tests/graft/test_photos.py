"""Local photo tables: column detection, date formats, duplicates, bad rows, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipeline.errors import BadInputError, InputFileError
from pipeline.graft.photos import ColumnSpec, flickr_url_from_filename, load_photo_table, parse_date


def test_parse_date_forms() -> None:
    assert parse_date(1_600_000_000) == ("2020-09-13T12:26:40", True)
    assert parse_date(1_600_000_000_000) == ("2020-09-13T12:26:40", True)
    assert parse_date("1600000000000") == ("2020-09-13T12:26:40", True)
    assert parse_date("1.6E+12") == ("2020-09-13T12:26:40", True)
    assert parse_date(1_600_000_000_000_000) == ("2020-09-13T12:26:40", True)  # microseconds
    assert parse_date("2019-05-03 14:22:10") == ("2019-05-03T14:22:10", True)
    assert parse_date("2019-05-03T14:22:10Z") == ("2019-05-03T14:22:10", True)
    assert parse_date("2019-05-03") == ("2019-05-03T00:00:00", True)
    assert parse_date("") == (None, True) and parse_date(None) == (None, True)
    assert parse_date("0000-00-00 00:00:00") == (None, True)
    assert parse_date("last summer")[1] is False


def test_detects_columns_case_insensitively_and_rejects_bad_rows(tmp_path: Path) -> None:
    p = tmp_path / "photos.csv"
    pd.DataFrame({
        "Photo_ID": ["a", "b", "b", "c", "d", "e", "f", "g"],
        "Latitude": [48.1, 48.2, 48.2, 95.0, 48.3, 0.0, "x", 48.4],
        "LNG": [11.5, 11.6, 11.6, 11.0, 11.7, 0.0, 11.0, 11.8],
        "captured_at": ["2020-01-02", 1_600_000_000_000, "", "2020-01-01", "not a date", "2020-01-01", "", 1.6e9],
        "Prob_Indoor": [0.1, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.2],
    }).to_csv(p, index=False)
    t = load_photo_table(p, ColumnSpec(max_indoor=0.5))
    assert t.columns["id"] == "Photo_ID" and t.columns["lon"] == "LNG" and t.columns["date"] == "captured_at"
    assert [ph.photo_id for ph in t.photos] == ["a", "g"]
    codes = [(r.photo_id, r.error_code) for r in t.rejected]
    assert codes == [("b", "indoor"), ("b", "duplicate"), ("c", "bad_coordinates"), ("d", "bad_date"),
                     ("e", "bad_coordinates"), ("f", "bad_coordinates")]
    assert t.counts()["rejected"]["duplicate"] == 1
    assert t.photos[1].date == "2020-09-13T12:26:40"


def test_explicit_columns_and_parquet(tmp_path: Path) -> None:
    p = tmp_path / "photos.parquet"
    pd.DataFrame({"key": [1, 2], "y": [10.0, 10.1], "x": [20.0, 20.1], "when": [1.6e12, None],
                  "file": ["a.jpg", "/abs/b.jpg"]}).to_parquet(p)
    t = load_photo_table(p, ColumnSpec(id_col="KEY", lat_col="y", lon_col="x", date_col="when", path_col="file"))
    assert [ph.photo_id for ph in t.photos] == ["1", "2"]
    assert t.photos[0].path == str(tmp_path / "a.jpg") and t.photos[1].path == "/abs/b.jpg"
    assert t.photos[1].date is None


def test_unknown_columns_error_lists_found_columns(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_text("ident,northing,easting\n1,2,3\n")
    with pytest.raises(BadInputError, match=r"latitude column.*found: ident, northing, easting"):
        load_photo_table(p, ColumnSpec(id_col="ident"))
    with pytest.raises(BadInputError, match=r"--lat-col 'lat_deg' is not a column"):
        load_photo_table(p, ColumnSpec(id_col="ident", lat_col="lat_deg"))
    with pytest.raises(InputFileError, match="photo table not found"):
        load_photo_table(tmp_path / "missing.csv")


def test_flickr_url_from_im2gps_names() -> None:
    assert flickr_url_from_filename("1000269685_e60e9cdfb4_1125_78841376@N00.jpg") == (
        "https://live.staticflickr.com/1125/1000269685_e60e9cdfb4.jpg")
    assert flickr_url_from_filename("holiday.jpg") is None


def test_other_formats(tmp_path: Path) -> None:
    """TSV with a BOM and spaced names; parquet with datetime64 and a missing date."""
    p = tmp_path / "p.tsv"
    p.write_text("\ufeffPhoto ID\tLatitude\tLong\tDate-Taken\n7\t1.5\t2.5\t2020-02-02T10:00:00+02:00\n",
                 encoding="utf-8")
    t = load_photo_table(p)
    assert [(ph.photo_id, ph.lat, ph.lon, ph.date) for ph in t.photos] == [("7", 1.5, 2.5, "2020-02-02T08:00:00")]
    q = tmp_path / "q.parquet"
    pd.DataFrame({"img_id": ["a", "b"], "lat": [1.0, 2.0], "lng": [3.0, 4.0],
                  "captured_at": pd.to_datetime(["2021-03-04 05:06:07", None])}).to_parquet(q)
    t = load_photo_table(q)
    assert [ph.date for ph in t.photos] == ["2021-03-04T05:06:07", None]


def test_photos_command_writes_a_normalised_table(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    p = tmp_path / "t.csv"
    p.write_text("ID,LAT,LON,TAKEN\na,1,2,1600000000\na,1,2,1600000000\nb,91,2,\n")
    res = CliRunner().invoke(app, ["graft", "photos", "--photos", str(p), "--out", str(tmp_path / "o.parquet")])
    assert res.exit_code == 0, res.output
    rows = pd.read_parquet(tmp_path / "o.parquet").to_dict("records")
    assert len(rows) == 1 and rows[0]["photo_id"] == "a" and rows[0]["date"] == "2020-09-13T12:26:40"
