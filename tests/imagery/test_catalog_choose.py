"""The shipped catalog, user catalogs, and the per-object collection choice (synthetic objects)."""

from __future__ import annotations

from pathlib import Path

import pytest
from shapely.geometry import Point, Polygon, box

from pipeline.config import ImageryConfig, PlannerConfig
from pipeline.errors import BadInputError, ConfigError, InputFileError
from pipeline.imagery.catalog import load_catalog
from pipeline.imagery.choose import Candidate, candidates, object_span_m, plan_object
from pipeline.imagery.router import ImageryRouter, parse_spec
from pipeline.records import OsmObject

SKYSCRIPT_IDS = [
    "Switzerland/SWISSIMAGE/orthos/10cm", "Spain/PNOA/PNOA10", "Germany/Brandenburg/orthos/20cm",
    "Finland/SMK/V/50cm", "USDA/NAIP/DOQQ", "SKYSAT/GEN-A/PUBLIC/ORTHO/RGB",
    "SKYSAT/GEN-A/PUBLIC/ORTHO/MULTISPECTRAL", "COPERNICUS/S2_SR_HARMONIZED", "LANDSAT/LC08/C02/T1_TOA",
    "LANDSAT/LC09/C02/T1_TOA",
]
PLANNER = PlannerConfig()
IMAGERY = ImageryConfig()


def square(lon: float, lat: float, metres: float) -> Polygon:
    import math

    dlat = metres / 111_320.0 / 2
    dlon = dlat / math.cos(math.radians(lat))
    return box(lon - dlon, lat - dlat, lon + dlon, lat + dlat)


def way(geom, oid: int = 1, tags: dict[str, str] | None = None) -> OsmObject:
    return OsmObject("way", oid, tags or {"building": "yes"}, geom)


def test_shipped_catalog_has_skyscript_table_and_keyless_stac() -> None:
    cat = load_catalog()
    assert [e.id for e in cat.for_source("gee")] == SKYSCRIPT_IDS
    stac = {e.id: e for e in cat.for_source("stac")}
    assert {"earth-search/sentinel-2-l2a", "planetary-computer/sentinel-2-l2a", "planetary-computer/naip"} <= set(stac)
    assert stac["planetary-computer/naip"].sign == "planetary-computer"
    zurich, madrid, helsinki, denver, berlin = (
        Point(8.54, 47.37), Point(-3.70, 40.42), Point(24.94, 60.17), Point(-104.99, 39.74), Point(13.0, 52.4))
    cov = {e.id: e.coverage for e in cat.entries}
    assert cov["Switzerland/SWISSIMAGE/orthos/10cm"].covers(zurich)
    assert not cov["Switzerland/SWISSIMAGE/orthos/10cm"].covers(madrid)
    assert cov["Spain/PNOA/PNOA10"].covers(madrid) and cov["Finland/SMK/V/50cm"].covers(helsinki)
    assert cov["USDA/NAIP/DOQQ"].covers(denver) and not cov["USDA/NAIP/DOQQ"].covers(helsinki)
    assert cov["Germany/Brandenburg/orthos/20cm"].covers(berlin)


def test_user_catalog_overrides_by_id_and_adds(tmp_path: Path) -> None:
    (tmp_path / "mine.geojson").write_text('{"type": "Polygon", "coordinates": [[[0,0],[1,0],[1,1],[0,1],[0,0]]]}')
    user = tmp_path / "cat.yaml"
    user.write_text("""
collections:
  - id: COPERNICUS/S2_SR_HARMONIZED
    max_cloud: 5
  - id: projects/me/assets/drone
    source: gee
    type: Image
    gsd: 0.03
    bands: [b1, b2, b3]
    range: [0, 255]
    coverage: mine.geojson
""")
    cat = load_catalog(user)
    s2 = cat.get("COPERNICUS/S2_SR_HARMONIZED")
    assert s2.max_cloud == 5 and s2.cloud_property == "CLOUDY_PIXEL_PERCENTAGE" and s2.gsd == 10
    drone = cat.get("projects/me/assets/drone")
    assert drone.type == "Image" and drone.coverage.covers(Point(0.5, 0.5))
    assert cat.ids()[-1] == "projects/me/assets/drone"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("collections:\n  - {id: X, source: gee, gsd: 1, bands: [R,G,B], range: [0,255], coverage: global, cloud: 3}",
         "unknown key"),
        ("collections:\n  - {id: X, source: ftp, gsd: 1, bands: [R,G,B], range: [0,255], coverage: global}",
         "source must be"),
        ("collections:\n  - {id: X, source: gee, gsd: 1, bands: [R,G], range: [0,255], coverage: global}",
         "three bands"),
        ("collections:\n  - {id: X, source: gee, gsd: 1, bands: [R,G,B], range: [0,255]}", "missing key"),
        ("collections:\n  - {id: X, source: gee, gsd: 1, bands: [R,G,B], range: [0,255], coverage: [1,2,3]}",
         "W, S, E, N"),
        ("collections: 3", "must hold 'collections:'"),
    ],
)
def test_bad_catalog_entries_are_one_line_errors(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        load_catalog(path)
    assert "\n" not in str(info.value)


def test_missing_catalog_and_unknown_collection(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="catalog file not found"):
        load_catalog(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="unknown collection id 'NOPE/NOPE'"):
        load_catalog().get("NOPE/NOPE")


def test_antimeridian_coverage_box(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("collections:\n  - {id: fiji, source: gee, gsd: 1, bands: [R,G,B], range: [0,255], "
                    "coverage: [177, -21, -178, -12]}\n")
    cov = load_catalog(path).get("fiji").coverage
    assert cov.covers(Point(179.5, -17)) and cov.covers(Point(-179.5, -17)) and not cov.covers(Point(0, -17))


def _pool(gsds: dict[str, float], coverage=None) -> list[Candidate]:
    return [Candidate(cid, "gee", g, coverage, (None, None), "", i) for i, (cid, g) in enumerate(gsds.items())]


def test_finest_candidate_within_max_gsd_and_size() -> None:
    pool = _pool({"s2": 10.0, "naip": 1.0, "swiss": 0.1})
    house = way(square(8.54, 47.37, 20.0))
    planned = plan_object(house, pool, PLANNER, IMAGERY, 0, max_gsd=1.0)
    assert [r.collection for r in planned] == ["swiss"]
    # A 2 km park spans 20,000 px at 0.1 m (beyond max_object_px): NAIP is the finest that fits.
    park = way(square(8.54, 47.37, 2000.0), 2)
    assert [r.collection for r in plan_object(park, pool, PLANNER, IMAGERY, 0, max_gsd=10.0)] == ["naip"]
    # A 20 m house is 2 px at 10 m: under planner.min_object_px, so S2 is no candidate for it.
    got = plan_object(house, _pool({"s2": 10.0}), PLANNER, IMAGERY, 0, max_gsd=10.0)
    assert isinstance(got, str) and "outside 4..4096 px" in got


def test_reasons_name_the_filters() -> None:
    pool = [Candidate("alps", "gee", 0.1, box(5, 45, 11, 48)),
            Candidate("old", "gee", 1.0, None, ("2001-01-01", "2002-01-01"))]
    far = way(square(-40.0, 30.0, 30.0))
    cands, why = candidates(far, [pool[0]], PLANNER, 0, max_gsd=None)
    assert not cands and "no imagery covers this object" in why
    _c, why = candidates(way(square(8, 46, 30)), pool, PLANNER, 0, max_gsd=0.05, date="2020-06-01")
    assert "1 have no image in their date range" in why and "coarser than its max GSD" in why


def test_images_per_object_distinct_collections_unique_keys() -> None:
    pool = _pool({"a": 0.5, "b": 1.0, "c": 2.0})
    cfg = ImageryConfig(images_per_object=2)
    planned = plan_object(way(square(10, 50, 60)), pool, PLANNER, cfg, 0, max_gsd=None)
    assert [r.collection for r in planned] == ["a", "b"]
    assert [r.key for r in planned] == ["w1", "w1_1"] and all("." not in r.key for r in planned)


def test_random_policy_is_seeded() -> None:
    pool = _pool({f"c{i}": 0.1 * (i + 1) for i in range(6)})
    cfg = ImageryConfig(choose="random")
    objs = [way(square(10 + i * 0.01, 50, 40), i) for i in range(30)]

    def picks(seed: int) -> list[str]:
        out = []
        for o in objs:
            planned = plan_object(o, pool, PLANNER, cfg, seed, max_gsd=None)
            assert not isinstance(planned, str)
            out.append(planned[0].collection)
        return out

    assert picks(1) == picks(1)
    assert picks(1) != picks(2)
    assert len(set(picks(1))) > 2


def test_metres_at_high_latitude() -> None:
    # 100 m square at 78°N (Svalbard): about 0.0042° of longitude but still 100 m.
    obj = way(square(15.6, 78.2, 100.0))
    assert object_span_m(obj) == pytest.approx(100.0, rel=0.03)  # not 0.004 (degrees) nor 480 (1/cos)
    planned = plan_object(obj, _pool({"x": 0.5}), PLANNER, IMAGERY, 0, max_gsd=None)
    assert not isinstance(planned, str)
    r = planned[0]
    assert r.width * r.gsd >= 100.0 and r.crs == "EPSG:32633"


def test_antimeridian_and_pole_tiles_fail_with_reasons() -> None:
    node = OsmObject("node", 7, {"man_made": "mast"}, Point(179.9999, -16.5))
    got = plan_object(node, _pool({"x": 1.0}), PLANNER, IMAGERY, 0, max_gsd=None)
    assert isinstance(got, str) and "antimeridian" in got
    pole = OsmObject("node", 8, {"man_made": "mast"}, Point(10.0, 89.9))
    got = plan_object(pole, _pool({"x": 1.0}), PLANNER, IMAGERY, 0, max_gsd=None)
    assert isinstance(got, str) and "pole" in got


def test_router_uses_only_given_sources(tmp_path: Path) -> None:
    router = ImageryRouter(["gee:my-project"], IMAGERY, connect=False)
    assert {c.source for c in router.pool} == {"gee"} and len(router.pool) == 10
    router = ImageryRouter(["stac:https://earth-search.aws.element84.com/v1/"], IMAGERY, connect=False)
    assert [c.collection for c in router.pool] == ["earth-search/sentinel-2-l2a"]
    with pytest.raises(BadInputError, match="no catalog collection is served"):
        ImageryRouter(["stac:http://127.0.0.1:9/stac"], IMAGERY, connect=False)
    with pytest.raises(BadInputError, match="unknown scheme"):
        parse_spec("s3:bucket/prefix")


def test_a_dated_request_picks_the_closest_then_clearest_scene() -> None:
    """GRAFT's rule: the acquisition closest to the tile date (under the cloud filter), clearer first."""
    from pipeline.imagery.remote import Scene, date_window, effective_pick, order_scenes

    scenes = [
        Scene("far-clear", "2020-01-01T10:00:00Z", 0.0),
        Scene("near-cloudy", "2020-06-14T10:00:00Z", 15.0),
        Scene("near-clear", "2020-06-14T10:05:00Z", 2.0),
        Scene("later", "2020-06-20T10:00:00Z", 1.0),
    ]
    pick = effective_pick("least-cloudy", "2020-06-15")
    assert pick == "closest-to-date" and effective_pick("least-cloudy", None) == "least-cloudy"
    assert [s.id for s in order_scenes(scenes, pick, "2020-06-15")][:3] == ["near-clear", "near-cloudy", "later"]
    assert order_scenes(scenes, "least-cloudy")[0].id == "far-clear"
    assert date_window("2019-01-01", None, "2020-06-15") == ("2019-06-15", "2021-06-16")
    assert date_window(None, None, None) == (None, None)
