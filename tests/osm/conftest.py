"""Fixtures for the OSM tests: synthetic Overpass data, a loopback server, a fast client config."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.osm.overpass import OverpassConfig
from pipeline.osm.overpass_ql import QueryLimits
from tests.osm.overpass_server import OverpassFixture

ROOT = Path(__file__).resolve().parents[2]


def synthetic_elements(n: int = 6, x0: float = 24.0, y0: float = 60.0) -> list[dict[str, Any]]:
    """An n×n grid of buildings, a bench per building, a road, and a multipolygon with a hole."""
    nodes: list[dict[str, Any]] = []
    ways: list[dict[str, Any]] = []
    nid = 1000
    for i in range(n):
        for j in range(n):
            x, y = x0 + i * 0.001, y0 + j * 0.001
            ids = []
            for dx, dy in ((0, 0), (0.0004, 0), (0.0004, 0.0004), (0, 0.0004)):
                nodes.append({"type": "node", "id": nid, "lat": y + dy, "lon": x + dx})
                ids.append(nid)
                nid += 1
            ways.append({"type": "way", "id": 10 * nid, "nodes": [*ids, ids[0]], "tags": {"building": "yes"}})
            nodes.append(
                {"type": "node", "id": nid, "lat": y + 0.0007, "lon": x + 0.0007, "tags": {"amenity": "bench"}}
            )
            nid += 1
    road = [n_["id"] for n_ in nodes[:: 5 * n]]
    ways.append({"type": "way", "id": 1, "nodes": road, "tags": {"highway": "service"}})
    rings = []
    for k, (x, y, s) in enumerate(((x0 - 0.01, y0 - 0.01, 0.008), (x0 - 0.008, y0 - 0.008, 0.002))):
        ids = []
        for dx, dy in ((0, 0), (s, 0), (s, s), (0, s)):
            nodes.append({"type": "node", "id": nid, "lat": y + dy, "lon": x + dx})
            ids.append(nid)
            nid += 1
        ways.append({"type": "way", "id": 2 + k, "nodes": [*ids, ids[0]]})
        rings.append(2 + k)
    rel = {
        "type": "relation",
        "id": 7,
        "tags": {"type": "multipolygon", "natural": "wood"},
        "members": [
            {"type": "way", "ref": rings[0], "role": "outer"},
            {"type": "way", "ref": rings[1], "role": "inner"},
        ],
    }
    return [*nodes, *ways, rel]


def expected_keys(elements: list[dict[str, Any]]) -> set[str]:
    """Independent statement of which elements must come out as objects."""
    skip = {"created_by", "source", "note", "fixme", "FIXME"}
    keys = set()
    for e in elements:
        tags = dict(e.get("tags") or {})
        if e["type"] == "relation":
            if tags.get("type") not in ("multipolygon", "boundary"):
                continue
            tags.pop("type", None)
        if any(k not in skip for k in tags):
            keys.add(f"{e['type'][0]}{e['id']}")
    return keys


def load_recorded(shared: Path, n: int) -> list[dict[str, Any]]:
    with gzip.open(shared / "overpass" / f"overpass-response-{n}.json.gz", "rt") as fh:
        return json.load(fh)["elements"]


def short_sleep(seconds: float) -> None:
    """Real but tiny waits: backoff and status waits are exercised without slowing tests."""
    time.sleep(min(seconds, 0.01))


@pytest.fixture
def fast_config(tmp_path: Path) -> OverpassConfig:
    return OverpassConfig(
        endpoints=("http://127.0.0.1:9/api",),
        slots_per_endpoint=3,
        socket_timeout_s=0.5,
        read_deadline_s=5.0,
        attempts=8,
        backoff_s=0.01,
        max_backoff_s=0.05,
        status_max_wait_s=30.0,
        limits=QueryLimits(timeout_s=25, maxsize_bytes=64 * 1024 * 1024),
        cache_dir=str(tmp_path / "cache"),
        slot_dir=str(tmp_path / "slots"),
    )


@pytest.fixture
def synthetic_server() -> Iterator[OverpassFixture]:
    with OverpassFixture(synthetic_elements()) as fx:
        yield fx
