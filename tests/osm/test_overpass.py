"""Overpass source against a loopback fixture server (synthetic data; always runs)."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from pipeline.errors import BadInputError, OsmSourceError
from pipeline.geo import BBox
from pipeline.osm import make_osm_source
from pipeline.osm.overpass import OverpassConfig, OverpassSource
from pipeline.osm.overpass_client import parse_response, status_wait_seconds
from pipeline.osm.overpass_ql import build_query, split_bbox
from pipeline.retry import Retryable, RetryPolicy, retry_call
from tests.osm.conftest import expected_keys, short_sleep, synthetic_elements
from tests.osm.overpass_server import STATUS_BUSY, STATUS_OK, OverpassFixture

AREA = BBox(23.98, 59.98, 24.01, 60.01)


def source(cfg: OverpassConfig, fx: OverpassFixture, **kw: object) -> OverpassSource:
    return OverpassSource(cfg.with_endpoints([fx.endpoint]), sleep=short_sleep, rng=random.Random(1), **kw)


def test_retry_helper_backoff_is_bounded_and_jittered() -> None:
    policy = RetryPolicy(attempts=4, base_delay=1.0, max_delay=5.0)
    rng = random.Random(0)
    for attempt, step in enumerate([1, 2, 4, 5, 5]):
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert step / 2 <= min(delays) and max(delays) <= step
        assert max(delays) - min(delays) > step / 4  # really jittered
    assert policy.delay(0, rng, retry_after=3) >= 3
    assert policy.delay(0, rng, retry_after=999) <= 5
    calls: list[int] = []
    waits: list[float] = []

    def flaky(attempt: int) -> str:
        calls.append(attempt)
        raise Retryable("busy")

    with pytest.raises(Retryable):
        retry_call(flaky, policy, sleep=waits.append, rng=rng)
    assert calls == [0, 1, 2, 3] and len(waits) == 3
    with pytest.raises(KeyError):  # not retryable: raised at once
        retry_call(lambda a: {}["x"], policy, sleep=waits.append)
    assert retry_call(lambda a: a if a == 2 else (_ for _ in ()).throw(Retryable("x")), policy, sleep=waits.append) == 2


def test_status_parsing() -> None:
    assert status_wait_seconds(STATUS_OK) == 0
    assert status_wait_seconds(STATUS_BUSY) == 1
    assert status_wait_seconds(None) == 0
    assert status_wait_seconds("Rate limit: 0\n") == 0


@pytest.mark.parametrize(
    ("body", "ctype", "words"),
    [
        (b"<html><title>Server Busy</title></html>", "text/html", "HTML instead of JSON: 'Server Busy'"),
        (b'{"elements": [{"type": "node"', "application/json", "truncated"),
        (b'{"elements": [], "remark": "runtime error: out of memory"}', "application/json", "runtime error"),
        (b"<osm/>", "application/osm3s+xml", "HTML instead of JSON"),
        (b"{}", "application/json", "without an 'elements'"),
        (b"{}", "text/plain", "not application/json"),
    ],
)
def test_bad_responses_are_retryable_failures(body: bytes, ctype: str, words: str) -> None:
    with pytest.raises(Retryable, match=words.replace("(", r"\(")):
        parse_response(body, ctype, "http://x/api")


def test_queries_carry_limits_and_both_bbox_forms() -> None:
    q = build_query(AREA)
    assert "[timeout:180]" in q and "[maxsize:" in q and "(59.9800000,23.9800000,60.0100000,24.0100000)" in q
    assert "[bbox:59.9800000,23.9800000,60.0100000,24.0100000]" in build_query(AREA, global_bbox=True)
    tiles = split_bbox(BBox(0, 0, 1, 0.5), 0.25)
    assert len(tiles) == 8 and tiles[-1].east == 1 and tiles[-1].north == 0.5
    with pytest.raises(BadInputError):
        build_query(None)


def test_every_element_survives_injected_faults(fast_config: OverpassConfig, synthetic_server: OverpassFixture) -> None:
    synthetic_server.state.faults = ["429", "504", "remark", "truncated", "html", "hang"]
    synthetic_server.state.hang_s = 3.0
    src = source(fast_config, synthetic_server)
    start = time.monotonic()
    objs = list(src.objects(AREA))
    assert time.monotonic() - start < 3.0  # the hung request timed out client-side
    assert {o.key for o in objs} == expected_keys(synthetic_elements())
    assert all(o.ok for o in objs)
    counts = synthetic_server.state.counts
    assert all(counts[f] == 1 for f in ("429", "504", "remark", "truncated", "html", "hang"))
    assert src.client.stats["retries"] == 6
    assert synthetic_server.state.violations == 0
    by_key = {o.key: o for o in objs}
    assert by_key["r7"].geometry.geom_type == "MultiPolygon" and len(by_key["r7"].geometry.geoms[0].interiors) == 1
    assert by_key["w1"].geometry.geom_type == "LineString"
    # A second run is served from the cache: no new interpreter requests.
    before = counts["interpreter"]
    again = list(source(fast_config, synthetic_server).objects(AREA))
    assert {o.key for o in again} == {o.key for o in objs} and counts["interpreter"] == before


def test_no_request_while_no_free_slot(fast_config: OverpassConfig, synthetic_server: OverpassFixture) -> None:
    synthetic_server.state.busy_status_calls = 3
    src = source(fast_config, synthetic_server)
    assert list(src.objects(AREA))
    assert synthetic_server.state.violations == 0
    assert src.client.stats["status_waits"] == 3


def test_persistent_html_is_an_error_not_an_empty_result(
    fast_config: OverpassConfig, synthetic_server: OverpassFixture
) -> None:
    synthetic_server.state.faults = ["html"] * 20
    cfg = fast_config.replace(attempts=3)
    with pytest.raises(OsmSourceError, match="HTML instead of JSON"):
        list(source(cfg, synthetic_server).objects(AREA))
    assert not list(Path(cfg.cache_dir).rglob("*.json.gz"))  # failures are never cached


def test_unreachable_endpoint_fails_fast(fast_config: OverpassConfig) -> None:
    src = OverpassSource(fast_config.replace(attempts=2), sleep=short_sleep)  # port 9: nothing listens
    start = time.monotonic()
    with pytest.raises(OsmSourceError, match="unreachable"):
        list(src.objects(AREA))
    assert time.monotonic() - start < 5


def test_keep_going_records_failed_queries(fast_config: OverpassConfig, synthetic_server: OverpassFixture) -> None:
    synthetic_server.state.faults = ["504"] * 2
    src = source(fast_config.replace(attempts=2), synthetic_server, workers=1)
    cells = split_bbox(AREA, 0.01)
    objs = list(src.run_queries([build_query(c) for c in cells], keep_going=True))
    assert len(src.failures) == 1 and "HTTP 504" in src.failures[0][1]
    assert objs and len({o.key for o in objs}) == len(objs)


def test_both_bbox_syntaxes_give_the_same_objects(
    fast_config: OverpassConfig, synthetic_server: OverpassFixture
) -> None:
    box = BBox(24.0, 60.0, 24.0025, 60.0025)
    src = source(fast_config, synthetic_server)
    local = {o.key for o in src.run_queries([build_query(box)])}
    glob = {o.key for o in src.run_queries([build_query(box, global_bbox=True)])}
    assert local == glob and 0 < len(local) < len(expected_keys(synthetic_elements()))
    assert "[bbox:" in synthetic_server.state.queries[-1]


def test_concurrency_stays_within_slots(fast_config: OverpassConfig) -> None:
    with OverpassFixture(synthetic_elements(), slots=2) as fx:
        cfg = fast_config.replace(slots_per_endpoint=2, cache_dir=None)
        src = source(cfg, fx, workers=6)  # more threads than slots: the slot files hold them back
        cells = split_bbox(AREA, 0.005)
        objs = list(src.run_queries([build_query(c) for c in cells]))
        assert {o.key for o in objs} == expected_keys(synthetic_elements())
        assert fx.state.max_in_flight <= 2 and fx.state.counts["429"] == 0


def test_make_osm_source_overpass_forms() -> None:
    src = make_osm_source("overpass:https://user:pw@example.org/api/interpreter")
    assert src.describe()["endpoints"] == ["https://example.org/api"]
    assert "pw" not in str(src.describe())
    assert len(make_osm_source("overpass").describe()["endpoints"]) >= 2
    two = make_osm_source("overpass:https://a.example/api,https://b.example/api/interpreter")
    assert two.describe()["endpoints"] == ["https://a.example/api", "https://b.example/api"]
    with pytest.raises(BadInputError, match="needs --bbox"):
        list(make_osm_source("overpass").objects())
    with pytest.raises(BadInputError, match="bad Overpass endpoint"):
        make_osm_source("overpass:ftp//nowhere")


def test_failover_to_a_second_endpoint(fast_config: OverpassConfig) -> None:
    with OverpassFixture(synthetic_elements()) as fx:
        cfg = fast_config.with_endpoints(["http://127.0.0.1:9/api", fx.endpoint])  # the first is down
        src = OverpassSource(cfg, sleep=short_sleep, rng=random.Random(0))
        assert {o.key for o in src.objects(AREA)} == expected_keys(synthetic_elements())
        assert src.client.stats["connection_errors"] <= 1
