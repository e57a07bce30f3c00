"""Fixtures for the tag classifier: a tiny random open_clip text model and small label files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TINY_CLIP = "tiny-tag-test"
# One-layer towers, 32-wide: builds in well under a second, embeds deterministically (seeded).
TINY_CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}

# Enough rows per class for the inner CV: 3 GSD rows per class, non-groundable families.
SMALL_LABELS = """tag,groundable,max_gsd,decided_by,note
building=*,yes,1,manual,
building=house,yes,1,manual,
highway=residential,yes,1,manual,
leisure=pitch,yes,1,manual,
amenity=bench,yes,0.1,manual,
man_made=manhole,yes,0.1,manual,
barrier=bollard,yes,0.1,manual,
power=pole,yes,0.2,manual,
highway=crossing,yes,0.2,manual,
barrier=gate,yes,0.2,manual,
natural=tree,yes,0.6,manual,
building=shed,yes,0.6,manual,
leisure=swimming_pool,yes,0.6,manual,
landuse=forest,yes,10,manual,
natural=water,yes,10,manual,
landuse=farmland,yes,10,manual,
name=*,no,,manual,
name:*=*,no,,manual,
addr:*=*,no,,manual,
ref=*,no,,manual,
phone=*,no,,manual,
website=*,no,,manual,
opening_hours=*,no,,manual,
operator=*,no,,manual,
shop=bakery,no,,manual,
amenity=bank,no,,manual,
wikidata=*,no,,manual,
source=*,no,,manual,
"""


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Embedder name of a registered tiny random open_clip model (no weights, no network)."""
    import open_clip

    d = tmp_path_factory.mktemp("open_clip_cfg")
    (d / f"{TINY_CLIP}.json").write_text(json.dumps(TINY_CLIP_CFG), encoding="utf-8")
    open_clip.add_model_config(d)
    return f"open_clip:{TINY_CLIP}:none"


@pytest.fixture
def small_labels(tmp_path: Path) -> Path:
    p = tmp_path / "labels.csv"
    p.write_text(SMALL_LABELS, encoding="utf-8")
    return p


@pytest.fixture
def cache_path(tmp_path: Path) -> Path:
    return tmp_path / "embeddings.sqlite"


@pytest.fixture(scope="session")
def minilm_cache(request: pytest.FixtureRequest) -> Path:
    """A cache kept across runs in .pytest_cache: MiniLM embeds the shipped labels once, not per run."""
    return Path(request.config.cache.mkdir("skyscript-tag-embeddings")) / "embeddings.sqlite"
