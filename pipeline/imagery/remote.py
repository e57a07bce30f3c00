"""What the remote sources (Earth Engine, STAC) share: scene ordering, the catalog's linear
value range to uint8, and the empty-share check."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.errors import ImageryError
from pipeline.failures import IMAGERY_ERROR, NO_IMAGERY, NODATA


def imagery_error(code: str, message: str) -> ImageryError:
    """An :class:`ImageryError` carrying the failed row's ``error_code`` (``exc.code``)."""
    exc = ImageryError(message)
    exc.code = code  # type: ignore[attr-defined]
    return exc


__all__ = ["IMAGERY_ERROR", "NODATA", "NO_IMAGERY", "imagery_error"]


@dataclass(frozen=True, slots=True)
class Scene:
    """One image of a collection as a search reports it."""

    id: str
    datetime: str | None  # ISO 8601
    cloud: float | None = None


def _when(text: str | None) -> float:
    if not text:
        return float("-inf")
    t = text.replace("Z", "+00:00")
    if len(t) == 10:
        t += "T00:00:00+00:00"
    dt = _dt.datetime.fromisoformat(t)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_dt.UTC)
    return dt.timestamp()


DATE_WINDOW_DAYS = 366  # a dated request searches this far either side of its date


def effective_pick(pick: str, date: str | None) -> str:
    """A request that names a target date (a GRAFT tile's photo date) asks for the acquisition
    closest to it, whatever the collection's default pick; without a date the catalog's pick holds."""
    return "closest-to-date" if date else pick


def date_window(start: str | None, end: str | None, date: str | None) -> tuple[str | None, str | None]:
    """The collection's date range narrowed to ``DATE_WINDOW_DAYS`` around ``date`` (when given)."""
    if not date:
        return start, end
    target = _dt.date.fromisoformat(date[:10])
    lo = (target - _dt.timedelta(days=DATE_WINDOW_DAYS)).isoformat()
    hi = (target + _dt.timedelta(days=DATE_WINDOW_DAYS)).isoformat()
    return (max(start, lo) if start else lo), (min(end, hi) if end else hi)


def order_scenes(scenes: Sequence[Scene], pick: str, date: str | None = None) -> list[Scene]:
    """Scenes best first for ``pick`` (the mosaic fills gaps of the first from the next ones).

    ``closest-to-date``: nearest in days to ``date``, the clearer first on the same day (scenes
    over the cloud threshold were filtered out by the search). Ties break on the id so the order
    never depends on the server's.
    """
    if pick == "most-recent":
        return sorted(scenes, key=lambda s: (-_when(s.datetime), s.id))
    if pick == "least-cloudy":
        return sorted(scenes, key=lambda s: (float("inf") if s.cloud is None else s.cloud, -_when(s.datetime), s.id))
    if pick == "closest-to-date":
        target = _when(date) if date else _dt.datetime.now(_dt.UTC).timestamp()
        return sorted(
            scenes,
            key=lambda s: (round(abs(_when(s.datetime) - target) / 86400.0),
                           float("inf") if s.cloud is None else s.cloud, s.id),
        )
    raise ImageryError(f"unknown pick {pick!r}")


def linear_uint8(data: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """(3, H, W) float (NaN = no data) → HxWx3 uint8: ``range`` mapped linearly to 0..255, clipped."""
    lo, hi = value_range
    valid = np.isfinite(data).all(axis=0)
    scaled = (np.nan_to_num(data) - lo) * (255.0 / (hi - lo))
    out = np.where(valid[None], np.clip(np.rint(scaled), 0, 255), 0).astype(np.uint8)
    return np.ascontiguousarray(out.transpose(1, 2, 0))


def check_empty(data: np.ndarray, max_frac: float, key: str, where: str) -> float:
    """The empty share of a (3, H, W) chip; raises when it is above ``max_frac``."""
    frac = float((~np.isfinite(data).all(axis=0)).mean())
    if frac > max_frac:
        raise imagery_error(
            NODATA, f"nodata: {frac:.0%} of chip {key!r} is empty in {where} (imagery.max_nodata_frac {max_frac:g})"
        )
    return frac
