"""Chip planning: object-centred tiles, sizes, seeded jitter that keeps the object in, raster edges."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import Transformer
from shapely.geometry import LineString, Point, Polygon, box
from shapely.geometry.base import BaseGeometry

from pipeline.chips import object_rng, plan_chip, plan_for_source, target_geometry
from pipeline.config import PlannerConfig
from pipeline.errors import ConfigError
from pipeline.imagery.local import LocalRasterSource
from pipeline.records import ChipRequest, OsmObject
from pipeline.seams import Coverage
from tests.imagery import synth

ROOT = Path(__file__).resolve().parents[2]
COV = [Coverage("local", "a.tif", 0.5, "EPSG:3857")]
NO_JITTER = PlannerConfig(jitter=False)


def to_crs(geom: BaseGeometry, crs: str) -> BaseGeometry:
    tr = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    return shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def obj(geom: BaseGeometry, osm_id: int = 7, osm_type: str = "way") -> OsmObject:
    return OsmObject(osm_type, osm_id, {"building": "yes"}, geom)  # type: ignore[arg-type]


def planned(result: ChipRequest | str) -> ChipRequest:
    assert isinstance(result, ChipRequest), result
    return result


def check_grid(req: ChipRequest, cfg: PlannerConfig) -> None:
    """The grid invariants every request satisfies."""
    x0, y0, x1, y1 = req.bounds
    assert req.width == req.height and cfg.tile_px_min <= req.width <= cfg.tile_px_max
    assert x1 - x0 == pytest.approx(req.width * req.gsd) and y1 - y0 == pytest.approx(req.height * req.gsd)
    assert req.crs.startswith("EPSG:326") or req.crs.startswith("EPSG:327")
    # The WGS84 bbox holds all four projected corners.
    tr = Transformer.from_crs(req.crs, "EPSG:4326", always_xy=True)
    lons, lats = tr.transform([x0, x1, x0, x1], [y0, y0, y1, y1])
    w, s, e, n = req.bbox
    assert all(w - 1e-12 <= lon <= e + 1e-12 for lon in lons) and all(s - 1e-12 <= la <= n + 1e-12 for la in lats)


def test_point_is_tile_centre_without_jitter() -> None:
    o = obj(Point(32.59, 0.35), osm_type="node")
    req = planned(plan_chip(o, COV, NO_JITTER, seed=1))
    check_grid(req, NO_JITTER)
    assert req.crs == "EPSG:32636" and req.gsd == 0.5 and req.image_id == "a.tif" and req.collection == "local"
    p = to_crs(o.geometry, req.crs)
    x0, y0, x1, y1 = req.bounds
    assert (x0 + x1) / 2 == pytest.approx(p.x, abs=1e-6) and (y0 + y1) / 2 == pytest.approx(p.y, abs=1e-6)
    assert (req.key, req.osm_type, req.osm_id, req.seed) == ("n7", "node", 7, 1)


def test_point_sizes_are_seeded_and_span_the_range() -> None:
    o = obj(Point(10.0, 50.0), osm_type="node")
    sizes = {planned(plan_chip(o, COV, NO_JITTER, seed=s)).width for s in range(60)}
    assert min(sizes) >= 224 and max(sizes) <= 512 and len(sizes) > 30


def test_same_object_and_seed_give_identical_requests() -> None:
    o = obj(Polygon([(10, 50), (10.0002, 50), (10.0002, 50.0001), (10, 50.0001)]))
    a = plan_chip(o, COV, PlannerConfig(), seed=3)
    assert a == plan_chip(o, COV, PlannerConfig(), seed=3)
    assert a != plan_chip(o, COV, PlannerConfig(), seed=4)
    assert object_rng(3, "w7").integers(1 << 30) == object_rng(3, "w7").integers(1 << 30)


def test_requests_are_identical_in_another_process() -> None:
    """The RNG is keyed by crc32 of the key, not Python's per-process salted ``hash``."""
    code = (
        "from shapely.geometry import LineString; from pipeline.chips import plan_chip; "
        "from pipeline.config import PlannerConfig; from pipeline.records import OsmObject; "
        "from pipeline.seams import Coverage; "
        "o = OsmObject('way', 7, {}, LineString([(10, 50), (10.01, 50), (10.02, 50.01)])); "
        "print(repr(plan_chip(o, [Coverage('local', 'a.tif', 0.5, 'EPSG:3857')], PlannerConfig(), 11)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    o = obj(LineString([(10, 50), (10.01, 50), (10.02, 50.01)]))
    assert out.stdout.strip() == repr(plan_chip(o, COV, PlannerConfig(), 11))


def test_line_tile_centres_on_a_random_vertex() -> None:
    coords = [(10.0, 50.0), (10.01, 50.0), (10.02, 50.01), (10.03, 50.0)]
    o = obj(LineString(coords))
    centres = set()
    for seed in range(40):
        req = planned(plan_chip(o, COV, NO_JITTER, seed))
        check_grid(req, NO_JITTER)
        x0, y0, x1, y1 = req.bounds
        centre = Point((x0 + x1) / 2, (y0 + y1) / 2)
        vertex = to_crs(target_geometry(o, seed), req.crs)
        assert centre.distance(vertex) < 1e-6
        centres.add(tuple(round(c, 6) for c in vertex.coords[0]))
    assert len(centres) == len(coords)


def test_polygon_tile_is_bbox_plus_margin() -> None:
    # ~44 x 22 m building at 0.1 m/px: needs 44·1.4/0.1 ≈ 620 px > 512 → framed at 0.2 m/px.
    o = obj(box(24.9400, 60.1700, 24.9408, 60.1702))
    cfg = PlannerConfig(jitter=False)
    req = planned(plan_chip(o, [Coverage("local", "a.tif", 0.1, "EPSG:3857")], cfg, 0))
    check_grid(req, cfg)
    assert req.gsd == pytest.approx(0.2)
    g = to_crs(o.geometry, req.crs)
    w, s, e, n = g.bounds
    assert req.width == math.ceil(max(e - w, n - s) * 1.4 / 0.2)
    assert box(*req.bounds).contains(g.buffer(0.19 * max(e - w, n - s)))
    # A small building gets the minimum tile at native GSD.
    small = planned(plan_chip(obj(box(24.94, 60.17, 24.94005, 60.17003)), COV, cfg, 0))
    assert small.width == cfg.tile_px_min and small.gsd == 0.5


def test_too_large_object_fails_with_reason() -> None:
    huge = obj(box(24.0, 60.0, 24.1, 60.05))  # ~5.5 km at 0.5 m/px → > 4096 px
    reason = plan_chip(huge, COV, PlannerConfig(), 0)
    assert isinstance(reason, str) and "object larger than 4096 px" in reason
    # Coarsening stops at the object's max GSD.
    mid = obj(box(24.0, 60.0, 24.01, 60.005))  # ~555 m: 1554 px at 0.5 → 1 m or 2 m would fit
    assert planned(plan_chip(mid, COV, PlannerConfig(), 0, max_gsd=2.0)).gsd == 2.0
    reason = plan_chip(mid, COV, PlannerConfig(), 0, max_gsd=1.0)
    assert isinstance(reason, str) and "even at 1 m/px" in reason


def test_gsd_from_config_is_never_finer_than_native() -> None:
    o = obj(Point(10.0, 50.0), osm_type="node")
    assert planned(plan_chip(o, COV, PlannerConfig(gsd=2.0), 0)).gsd == 2.0
    assert planned(plan_chip(o, COV, PlannerConfig(gsd=0.1), 0)).gsd == 0.5
    reason = plan_chip(o, COV, PlannerConfig(), 0, max_gsd=0.3)
    assert isinstance(reason, str) and "coarser than this object needs" in reason


def test_failures_are_reasons() -> None:
    o = obj(Point(10.0, 50.0), osm_type="node")
    none = plan_chip(o, [], PlannerConfig(), 0, source_name="local")
    assert none == "no imagery covers this object (source local)" and none.code == "no_imagery"
    bad = OsmObject("way", 1, {"building": "yes"}, None, status="failed", error_message="unclosed ring")
    broken = plan_chip(bad, COV, PlannerConfig(), 0)
    assert broken == "unclosed ring" and broken.code == "invalid_geometry"
    assert plan_chip(o, COV, PlannerConfig(), 0, max_gsd=0.3).code == "too_coarse"
    # Out-of-range planner settings fail when the config is built, naming the key and range.
    with pytest.raises(ConfigError, match=r"tile_px_max.*512.*>= 600"):
        PlannerConfig(tile_px_min=600)


# -- jitter keeps the object inside the tile (property-based) -----------------------------

lons = st.floats(-179.0, 179.0)
lats = st.floats(-79.0, 79.0)
offsets = st.floats(-0.0008, 0.0008)
sizes = st.floats(1e-6, 0.002)


@st.composite
def geometries(draw: st.DrawFn) -> BaseGeometry:
    lon, lat = draw(lons), draw(lats)
    kind = draw(st.sampled_from(["point", "line", "polygon"]))
    if kind == "point":
        return Point(lon, lat)
    if kind == "line":
        n = draw(st.integers(2, 6))
        return LineString([(lon + draw(offsets), lat + draw(offsets)) for _ in range(n)])
    return box(lon, lat, lon + draw(sizes), lat + draw(sizes))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    geom=geometries(),
    seed=st.integers(0, 2**40),
    gsd=st.floats(0.05, 10.0),
    margin=st.floats(0.0, 0.5),
)
def test_jitter_keeps_object_inside_tile(geom: BaseGeometry, seed: int, gsd: float, margin: float) -> None:
    cfg = PlannerConfig(jitter=True, margin_frac=margin)
    o = obj(geom)
    res = plan_chip(o, [Coverage("local", "x", gsd, "EPSG:3857")], cfg, seed)
    if isinstance(res, str):  # only huge polygons at fine GSDs may fail, and say why
        assert "object larger than" in res and isinstance(geom, Polygon)
        return
    check_grid(res, cfg)
    tile = box(*res.bounds).buffer(1e-6)
    target = target_geometry(o, seed)
    assert target is not None
    assert tile.covers(to_crs(target, res.crs))  # the point, the chosen vertex, or the polygon
    assert box(*res.bbox).buffer(1e-9).covers(target)
    assert res == plan_chip(o, [Coverage("local", "x", gsd, "EPSG:3857")], cfg, seed)


def test_jitter_actually_moves_tiles() -> None:
    o = obj(Point(10.0, 50.0), osm_type="node")
    offsets_seen = set()
    for seed in range(20):
        req = planned(plan_chip(o, COV, PlannerConfig(jitter=True), seed))
        p = to_crs(o.geometry, req.crs)
        x0, _y0, x1, _y1 = req.bounds
        offsets_seen.add(round(((x0 + x1) / 2 - p.x) / (x1 - x0), 3))
    assert len(offsets_seen) > 15 and max(abs(v) for v in offsets_seen) > 0.1


# -- raster edges (documented in pipeline.chips: move the tile inside, else fail) ----------


@pytest.fixture()
def merc(tmp_path: Path) -> LocalRasterSource:
    synth.merc_rgb(tmp_path)  # 512 px at ~0.0997 m ground: ~51 m across
    return LocalRasterSource(tmp_path)


def _near_edge_point(src: LocalRasterSource, inset_frac: float) -> Point:
    fp = src.footprint("merc_rgb.tif")
    assert fp is not None
    w, s, e, n = fp.bounds
    return Point(w + (e - w) * inset_frac, (s + n) / 2)


def test_point_near_edge_gets_a_tile_moved_inside_the_raster(merc: LocalRasterSource) -> None:
    o = obj(_near_edge_point(merc, 0.01), osm_type="node")  # ~0.5 m from the west edge
    cfg = PlannerConfig(tile_px_min=64, tile_px_max=128, jitter=False)
    req = planned(plan_for_source(o, merc, cfg, seed=5))
    tile = box(*req.bounds)
    fp = to_crs(merc.footprint("merc_rgb.tif"), req.crs)
    assert fp.buffer(1e-6).covers(tile)  # wholly inside the raster...
    assert tile.covers(to_crs(o.geometry, req.crs))  # ...and still around the object
    chip = merc.read(req)
    assert chip.provenance["empty_fraction"] == 0.0 and chip.pixels.shape == (req.height, req.width, 3)


def test_without_footprints_edge_tiles_stay_centred_and_read_part_empty(merc: LocalRasterSource) -> None:
    o = obj(_near_edge_point(merc, 0.01), osm_type="node")
    cfg = PlannerConfig(tile_px_min=64, tile_px_max=128, jitter=False)
    req = planned(plan_chip(o, merc.coverage(o.geometry), cfg, seed=5))
    chip = merc.read(req)
    assert 0.3 < chip.provenance["empty_fraction"] < 0.6  # the west half runs off the raster


def test_raster_smaller_than_any_tile_fails_with_reason(merc: LocalRasterSource) -> None:
    o = obj(_near_edge_point(merc, 0.5), osm_type="node")
    cfg = PlannerConfig(tile_px_min=600, tile_px_max=700)  # 600 px at 0.1 m = 60 m > 51 m raster
    reason = plan_for_source(o, merc, cfg, seed=0)
    assert isinstance(reason, str) and "too close to the edge of the imagery" in reason and "merc_rgb.tif" in reason


def test_plan_for_source_reports_uncovered_objects(merc: LocalRasterSource) -> None:
    reason = plan_for_source(obj(Point(0.0, 0.0), osm_type="node"), merc, PlannerConfig(), 0)
    assert reason == "no imagery covers this object (source local)"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    geom=geometries(),
    seed=st.integers(0, 2**40),
    gsd=st.floats(0.05, 2.0),
    pads=st.tuples(*[st.floats(0.0, 0.002)] * 4),
)
def test_jitter_with_footprint_keeps_tile_in_raster_and_object_in_tile(
    geom: BaseGeometry, seed: int, gsd: float, pads: tuple[float, float, float, float]
) -> None:
    """A raster outline around the object with random slack: tile inside it, object inside the tile."""
    w, s, e, n = geom.bounds
    footprint = box(w - pads[0], s - pads[1], e + pads[2], n + pads[3])
    cfg = PlannerConfig(jitter=True, tile_px_min=32, tile_px_max=256)
    o = obj(geom)
    res = plan_chip(o, [Coverage("local", "x", gsd, "EPSG:3857")], cfg, seed, {"x": footprint})
    if isinstance(res, str):
        assert "too close to the edge of the imagery" in res or "object larger than" in res
        return
    tile = box(*res.bounds)
    assert to_crs(footprint, res.crs).buffer(1e-6).covers(tile)
    assert tile.buffer(1e-6).covers(to_crs(target_geometry(o, seed), res.crs))


def test_footprint_slack_is_used_when_available() -> None:
    """With a raster much larger than the tile, edge handling never fails and never clips."""
    o = obj(Point(10.0, 50.0), osm_type="node")
    fp = {"a.tif": box(9.99, 49.99, 10.01, 50.01)}
    for seed in range(20):
        req = planned(plan_chip(o, COV, PlannerConfig(), seed, fp))
        assert to_crs(fp["a.tif"], req.crs).covers(box(*req.bounds))
