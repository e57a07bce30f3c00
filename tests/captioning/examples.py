"""The six captions from the SkyScript paper (issue 2, item 7): input tags and expected text."""

from __future__ import annotations

from typing import NamedTuple


class Example(NamedTuple):
    tags: dict[str, str]
    surrounding: list[dict[str, str]]
    single: str | None  # None: the paper gives no single-object caption for this one
    multi: str | None


PAPER_EXAMPLES: list[Example] = [
    Example(
        {"landuse": "quarry", "resource": "bauxite"},
        [],
        "landuse of quarry, resource of bauxite",
        "landuse of quarry with resource of bauxite",
    ),
    Example(
        {"amenity": "fountain"},
        [{"natural": "tree"}, {"highway": "footway"}],
        None,
        "amenity of fountain, surrounded by natural tree; road of footway",
    ),
    Example(
        {
            "power": "plant",
            "plant:source": "solar",
            "plant:method": "thermal",
            "plant:output:electricity": "19.9 MW",
        },
        [],
        "power plant, plant source of solar, plant method of thermal, plant output electricity of 19.9 MW",
        None,
    ),
    Example(
        {"power": "pole"},
        [{"power": "minor_line", "cables": "3", "voltage": "16000"}],
        None,
        "power pole, surrounded by power minor line with cables of 3 and voltage of 16000",
    ),
    Example({"man_made": "pier"}, [{"waterway": "river"}], None, "man made pier, surrounded by waterway of river"),
    Example(
        {"landuse": "farmland", "crop": "cotton"},
        [],
        "landuse of farmland, crop of cotton",
        "landuse of farmland with crop of cotton",
    ),
]
