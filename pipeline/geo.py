"""Small geographic helpers shared by every stage: bbox parsing and CRS choice."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import BadInputError


@dataclass(frozen=True, slots=True)
class BBox:
    """A WGS84 box: west, south, east, north in degrees. West must not exceed east."""

    west: float
    south: float
    east: float
    north: float

    def __post_init__(self) -> None:
        w, s, e, n = self.west, self.south, self.east, self.north
        if not all(isinstance(v, int | float) for v in (w, s, e, n)):
            raise BadInputError(f"bbox values must be numbers, got {(w, s, e, n)!r}")
        if not (-180.0 <= w <= 180.0 and -180.0 <= e <= 180.0):
            raise BadInputError(f"bbox longitudes must lie in [-180, 180], got west={w}, east={e}")
        if not (-90.0 <= s <= 90.0 and -90.0 <= n <= 90.0):
            raise BadInputError(f"bbox latitudes must lie in [-90, 90], got south={s}, north={n}")
        if w > e:
            raise BadInputError(
                f"bbox west ({w}) is greater than east ({e}): boxes across the antimeridian are not "
                "supported; split it into two boxes, one on each side of 180°."
            )
        if s > n:
            raise BadInputError(f"bbox south ({s}) is greater than north ({n}); pass W,S,E,N.")

    @classmethod
    def parse(cls, text: str) -> BBox:
        """Parse ``"W,S,E,N"`` (the CLI form)."""
        parts = [p.strip() for p in str(text).split(",")]
        if len(parts) != 4:
            raise BadInputError(f"--bbox must be W,S,E,N (four comma-separated numbers), got {text!r}")
        try:
            w, s, e, n = (float(p) for p in parts)
        except ValueError as exc:
            raise BadInputError(f"--bbox must be W,S,E,N numbers, got {text!r}") from exc
        return cls(w, s, e, n)

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.west, self.south, self.east, self.north)

    def contains_point(self, lon: float, lat: float) -> bool:
        return self.west <= lon <= self.east and self.south <= lat <= self.north

    def intersects(self, other: tuple[float, float, float, float]) -> bool:
        w, s, e, n = other
        return not (e < self.west or w > self.east or n < self.south or s > self.north)


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS84 UTM zone holding (lon, lat); UPS is not handled (|lat|>84 uses UTM)."""
    zone = int((lon + 180.0) // 6.0) + 1
    zone = min(max(zone, 1), 60)
    return (32600 if lat >= 0 else 32700) + zone
