"""Flickr client against the loopback server: paging, the 4,000 cap, faults, the key never leaking."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.graft.flickr import FlickrAuthError, FlickrClient, FlickrError, FlickrQuery, flickr_photos
from pipeline.retry import RetryPolicy
from tests.graft.flickr_server import VALID_KEY, make_universe, serve

BBOX = (2.20, 48.80, 2.45, 48.92)
FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)


def _client(url: str, tmp_path: Path | None = None, key: str = VALID_KEY, **kw) -> FlickrClient:
    return FlickrClient(key, endpoint=url, cache_dir=tmp_path, min_interval=0.0, policy=FAST, per_page=250, **kw)


def _expected(universe, query: FlickrQuery) -> set[str]:
    lo, hi = query.min_taken.replace("T", " "), query.max_taken.replace("T", " ")
    w, s, e, n = query.bbox or (-180, -90, 180, 90)
    return {p["id"] for p in universe.photos if lo <= p["datetaken"] <= hi and int(p["accuracy"]) >= 15
            and w <= float(p["longitude"]) <= e and s <= float(p["latitude"]) <= n}


def test_paging_past_the_cap_by_splitting_the_bbox() -> None:
    u = make_universe(9000, BBOX, seed=1)
    q = FlickrQuery(bbox=BBOX, min_taken="2015-01-01", max_taken="2021-01-01")
    with serve(u) as url:
        client = _client(url)
        table, stats = flickr_photos(client, q)
    got = {p.photo_id for p in table.photos}
    assert got == _expected(u, q)  # nothing lost to the cap, nothing invented
    assert stats["splits"] >= 1 and "truncated" not in stats
    assert {r.error_code for r in table.rejected} <= {"low_accuracy", "duplicate"}
    assert all(p.accuracy is not None and p.accuracy >= 15 for p in table.photos)
    assert sum(p.date is None for p in table.photos) > 0  # datetakenunknown=1 → undated
    sent = u.requests[0]
    assert sent["method"] == "flickr.photos.search" and sent["has_geo"] == "1" and sent["content_type"] == "1"
    assert sent["media"] == "photos" and "date_taken" in sent["extras"] and "geo" in sent["extras"]
    # Without splitting, only 4,000 would come back: the cap is real in the fixture.
    with serve(u) as url:
        c = _client(url)
        raw = c.call({**q.params(), "page": "30", "per_page": "250"})
    assert len(raw["photos"]["photo"]) == 250 and raw["photos"]["total"] == 9000


def test_point_radius_splits_dates() -> None:
    u = make_universe(6000, (2.30, 48.84, 2.32, 48.86), seed=2)
    q = FlickrQuery(lat=48.85, lon=2.31, radius_km=5, min_taken="2015-01-01", max_taken="2021-01-01")
    with serve(u) as url:
        table, stats = flickr_photos(_client(url), q)
    assert {p.photo_id for p in table.photos} == _expected(u, q)
    assert stats["splits"] >= 1
    assert "radius" in u.requests[0] and "bbox" not in u.requests[0]


def test_injected_faults_are_retried_and_cached(tmp_path: Path) -> None:
    u = make_universe(300, BBOX, seed=3)
    u.faults = [(429, None, {"Retry-After": "0"}), (503, None, {}),
                (200, {"stat": "fail", "code": 105, "message": "Service currently unavailable"}, {}), (502, None, {})]
    q = FlickrQuery(bbox=BBOX, min_taken="2015-01-01", max_taken="2021-01-01")
    slept: list[float] = []
    with serve(u) as url:
        client = _client(url, tmp_path, sleep=slept.append)
        with pytest.raises(FlickrError, match="kept failing after 4 attempts"):
            client.call({**q.params(), "page": "1", "per_page": "250"})  # 4 faults = 4 attempts
        table, _ = flickr_photos(client, q)
        assert len(table.photos) == len(_expected(u, q)) and len(slept) >= 3
        again = _client(url, tmp_path)
        table2, stats2 = flickr_photos(again, q)
    assert again.calls == 0 and stats2["cache_hits"] >= 1
    assert [p.photo_id for p in table2.photos] == [p.photo_id for p in table.photos]
    for f in tmp_path.rglob("*.json"):
        assert VALID_KEY not in f.read_text()


def test_invalid_key_is_one_line_and_never_echoed() -> None:
    u = make_universe(10, BBOX)
    q = FlickrQuery(bbox=BBOX, min_taken="2015-01-01", max_taken="2021-01-01")
    with serve(u) as url, pytest.raises(FlickrAuthError, match="Invalid API Key") as ei:
        flickr_photos(_client(url, key="wrong-key-ABCDEFG"), q)
    assert "wrong-key-ABCDEFG" not in str(ei.value) and "\n" not in str(ei.value)
    with pytest.raises(FlickrAuthError, match="FLICKR_API_KEY"):
        FlickrClient("")


def test_connection_errors_are_scrubbed() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    client = _client(f"http://127.0.0.1:{port}/rest/", sleep=lambda _s: None)
    with pytest.raises(FlickrError) as ei:
        client.call({"method": "flickr.photos.search"})
    assert VALID_KEY not in str(ei.value) and "***" in str(ei.value)
    assert VALID_KEY not in repr(client)


def test_cli_plan_from_flickr_never_writes_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.cli import app

    u = make_universe(500, BBOX, seed=4)
    monkeypatch.setenv("FLICKR_API_KEY", VALID_KEY)
    monkeypatch.setenv("SKYSCRIPT_CACHE", str(tmp_path / "cache"))
    with serve(u) as url:
        res = CliRunner().invoke(app, ["graft", "plan", "--photos", "flickr:2.20,48.80,2.45,48.92", "--gsd", "10",
                                       "--taken-from", "2015-01-01", "--taken-to", "2021-01-01",
                                       "--flickr-endpoint", url, "--flickr-interval", "0", "--out",
                                       str(tmp_path / "plan")])
    assert res.exit_code == 0, res.output
    assert VALID_KEY not in res.output
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert VALID_KEY.encode() not in f.read_bytes(), f
    assert (tmp_path / "plan" / "tiles.parquet").is_file()
    monkeypatch.setenv("FLICKR_API_KEY", "bad-key-000")
    with serve(u) as url:
        res = CliRunner().invoke(app, ["graft", "plan", "--photos", "flickr:2.20,48.80,2.45,48.92",
                                       "--taken-from", "2010-01-01", "--flickr-endpoint", url, "--out",
                                       str(tmp_path / "plan2")])
    assert res.exit_code == 2 and "Invalid API Key" in res.output and "bad-key-000" not in res.output


def test_unsplittable_query_is_truncated_and_counted() -> None:
    u = make_universe(4300, BBOX, seed=6)
    for p in u.photos:  # one spot, one second: neither the bbox nor the dates can be split
        p.update(latitude="48.850000", longitude="2.300000", datetaken="2019-01-01 10:00:00", accuracy="16",
                 datetakenunknown="0")
    q = FlickrQuery(bbox=(2.29999, 48.84999, 2.30001, 48.85001), min_taken="2019-01-01T09:59:00",
                    max_taken="2019-01-01T10:01:00")
    with serve(u) as url:
        table, stats = flickr_photos(_client(url), q)
    assert len(table.photos) == 4000 and stats["truncated"] == 300


def test_calls_are_spaced_by_the_rate_limit() -> None:
    u = make_universe(600, BBOX, seed=7)
    q = FlickrQuery(bbox=BBOX, min_taken="2015-01-01", max_taken="2021-01-01")
    waits: list[float] = []
    with serve(u) as url:
        client = FlickrClient(VALID_KEY, endpoint=url, min_interval=30.0, policy=FAST, per_page=250,
                              sleep=waits.append)
        flickr_photos(client, q)
    assert client.calls == 3 and len(waits) == 2 and all(25.0 < w <= 30.0 for w in waits)
