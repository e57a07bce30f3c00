"""Tag rules shared by every OSM source: which objects count, which closed ways are areas.

The area rules follow the usual OSM convention (as in osm2pgsql's and iD's area-key lists):
``area=no`` always wins, ``area=yes`` always makes an area, otherwise a closed way is an
area when it carries an area key whose value is not one of that key's linear values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pipeline.errors import BadInputError

# Keys whose closed ways are areas, mapped to the values that are still linear features.
AREA_KEYS: dict[str, frozenset[str]] = {
    "building": frozenset(),
    "building:part": frozenset(),
    "landuse": frozenset(),
    "landcover": frozenset(),
    "amenity": frozenset(),
    "leisure": frozenset({"track", "slipway"}),
    "natural": frozenset({"coastline", "cliff", "ridge", "arete", "tree_row", "earth_bank", "gully"}),
    "man_made": frozenset(
        {"embankment", "pipeline", "cutline", "breakwater", "groyne", "dyke", "goods_conveyor", "quay"}
    ),
    "shop": frozenset(),
    "tourism": frozenset(),
    "office": frozenset(),
    "craft": frozenset(),
    "healthcare": frozenset(),
    "historic": frozenset({"citywalls", "path"}),
    "military": frozenset({"trench"}),
    "aeroway": frozenset({"taxiway", "runway", "parking_position"}),
    "power": frozenset({"line", "minor_line", "cable"}),
    "place": frozenset(),
    "public_transport": frozenset(),
    "sport": frozenset(),
    "water": frozenset(),
    "wetland": frozenset(),
    "parking": frozenset(),
    "playground": frozenset({"balancebeam", "zipwire"}),
    "golf": frozenset({"hole", "path", "cartpath"}),
    "area:highway": frozenset(),
    "boundary": frozenset(),
    "emergency": frozenset(),
    "club": frozenset(),
    "allotments": frozenset(),
}
# Keys that are linear by default but have a few area values.
AREA_VALUES: dict[str, frozenset[str]] = {
    "waterway": frozenset({"riverbank", "dock", "boatyard", "dam", "fuel"}),
    "railway": frozenset({"platform", "station", "turntable", "roundhouse"}),
    "highway": frozenset({"rest_area", "services", "platform"}),
}
# Relation types whose geometry is an area (osmium assembles both).
AREA_RELATION_TYPES = frozenset({"multipolygon", "boundary"})


def has_interesting_tags(tags: Mapping[str, str], uninteresting: Iterable[str], relation: bool = False) -> bool:
    """True when some tag says what the object is (not only editor notes, sources, ``type``)."""
    skip = uninteresting if isinstance(uninteresting, frozenset) else frozenset(uninteresting)
    if relation:
        skip = skip | {"type"}  # a multipolygon with only ``type`` is an untagged ring set
    return any(k not in skip for k in tags)


def is_area(tags: Mapping[str, str]) -> bool:
    """Whether a *closed* way with ``tags`` is an area (polygon) rather than a ring line."""
    area = tags.get("area")
    if area == "no":
        return False
    if area == "yes" or tags.get("type") == "multipolygon":
        return True
    for key, value in tags.items():
        linear = AREA_KEYS.get(key)
        if linear is not None and value != "no" and value not in linear:
            return True
        values = AREA_VALUES.get(key)
        if values and value in values:
            return True
    return False


def parse_tag_specs(text: str | Iterable[str]) -> list[tuple[str, str | None]]:
    """Parse ``key=value,key2=*,key3`` into ``[(key, value), (key2, None), (key3, None)]``.

    ``None`` means "any value". Raises :class:`BadInputError` naming the bad item.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[tuple[str, str | None]] = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        bad_chars = any(c in key for c in '"[]~(){};') or any(c in value for c in '"[]~(){};')
        if not key or (sep and not value) or bad_chars or item.count("=") > 1:
            raise BadInputError(
                f"bad tag {item!r}: write tags as key=value or key=* separated by commas, "
                "e.g. --tags 'power=plant,man_made=*'"
            )
        out.append((key, None if (not sep or value == "*") else value))
    if not out:
        raise BadInputError(f"no tags given in {text!r}: write key=value or key=*, comma-separated")
    return out


def tag_spec_text(key: str, value: str | None) -> str:
    return f"{key}={'*' if value is None else value}"


class TagMatcher:
    """Fast membership test of an object's tags against ``key=value`` / ``key=*`` specs."""

    def __init__(self, specs: Iterable[tuple[str, str | None]]) -> None:
        self.any_value: set[str] = set()
        self.pairs: set[tuple[str, str]] = set()
        for key, value in specs:
            if value is None:
                self.any_value.add(key)
            else:
                self.pairs.add((key, value))

    def __bool__(self) -> bool:
        return bool(self.any_value or self.pairs)

    def matches(self, tags: Mapping[str, str]) -> bool:
        return any(k in self.any_value or (k, v) in self.pairs for k, v in tags.items())
