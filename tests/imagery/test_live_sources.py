"""Live services (off by default; run with ``-m live``): the keyless STAC path against Earth Search."""

from __future__ import annotations

import pytest
from shapely.geometry import box

from pipeline.config import ImageryConfig, PlannerConfig
from pipeline.imagery.router import ImageryRouter
from pipeline.records import OsmObject

EARTH_SEARCH = "https://earth-search.aws.element84.com/v1"


@pytest.mark.live
def test_earth_search_sentinel2_chip(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SKYSCRIPT_CACHE", str(tmp_path))
    router = ImageryRouter([f"stac:{EARTH_SEARCH}"], ImageryConfig(max_nodata_frac=0.5))
    park = OsmObject("way", 1, {"leisure": "park"}, box(24.925, 60.170, 24.945, 60.180))  # Helsinki
    planned = router.plan(park, PlannerConfig(), 0, max_gsd=10.0)
    assert not isinstance(planned, str)
    chip = router.read(planned[0])
    assert chip.collection == "earth-search/sentinel-2-l2a" and chip.image_id and chip.pixels.mean() > 5
