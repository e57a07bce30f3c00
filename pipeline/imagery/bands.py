"""Which bands become R, G, B, and how their values become uint8.

Chips are written as RGB JPEGs, so every raster (RGB photos, Sentinel-2 stacks, float
reflectance, single-band grey) has to be mapped to three 8-bit channels. The rules are
documented here and recorded in each chip's provenance so a sample says how it was made.

Band choice (first rule that applies):

1. ``override`` — the caller passed ``bands=(r, g, b)`` (1-based band indexes).
2. ``colorinterp`` — the raster tags bands as red/green/blue (RGB/RGBA photos, OAM mosaics).
3. ``palette`` — one paletted band: its colour table is applied (nearest resampling).
4. ``descriptions`` — band descriptions name red/green/blue (``B04``/``B4``/``red``, ...).
5. ``sentinel2-default`` — a 12- or 13-band stack without usable metadata is taken as a
   Sentinel-2 stack: B04, B03, B02 are bands 4, 3, 2 in both the 12-band L2A order
   (B01–B09, B8A, B11, B12, as in S2-100K/SSL4EO patches; B8A/B09 swap places in some
   exports, which does not move bands 2–4) and the 13-band L1C order.
6. ``grey`` — one or two bands (grey, grey+alpha): band 1 replicated to R, G and B.
7. ``first-three`` — anything else: bands 1, 2, 3 (R, G, B, NIR order of 4-band products).

Stretch (``stretch="auto"`` picks per raster; the name used is recorded):

- ``none`` — uint8 data is used as is (other data is clipped to 0..255).
- ``reflectance`` — surface reflectance to 8 bits with a fixed scale, so chips of one area are
  comparable: integer data is taken as reflectance × 10000 (Sentinel-2/Landsat DN) and mapped
  ``v / 3000 × 255`` (the usual true-colour range 0–0.3); float data whose values stay below 2
  is taken as reflectance 0–1 and mapped ``v / 0.3 × 255``; larger floats are treated as DN.
- ``percentile`` — per chip, the 2nd–98th percentile of the valid pixels of all three channels
  together (one range, so colour balance is kept) mapped to 0..255.

``auto``: uint8 → ``none``; multispectral (4+ bands, not colour-tagged RGB) or float →
``reflectance``; other integer data (e.g. single-band uint16) → ``percentile``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.errors import BadInputError

STRETCHES = ("auto", "none", "reflectance", "percentile")
# B04, B03, B02 in both 12-band (no B10) and 13-band Sentinel-2 stacks, 1-based.
S2_DEFAULT_RGB = (4, 3, 2)
DN_SCALE = 3000.0  # reflectance × 10000 → 0.3 reflectance is white
FLOAT_SCALE = 0.3  # reflectance 0–1 → 0.3 is white
FLOAT_REFLECTANCE_MAX = 2.0  # float data above this is taken as DN, not reflectance

_PATTERNS = {
    "red": re.compile(r"^(b0?4\b|red\b(?![\s_-]*edge)|r\b)", re.IGNORECASE),  # not "red edge"
    "green": re.compile(r"^(b0?3|green|g)\b", re.IGNORECASE),
    "blue": re.compile(r"^(b0?2|blue|b)\b", re.IGNORECASE),
}


@dataclass(frozen=True, slots=True)
class BandPlan:
    """1-based band indexes read as R, G, B, and the rule that chose them."""

    indexes: tuple[int, int, int]
    rule: str
    names: tuple[str, str, str]


def choose_bands(
    count: int,
    colorinterp: Sequence[str],
    descriptions: Sequence[str | None],
    override: Sequence[int] | None = None,
) -> BandPlan:
    """Pick the R, G, B bands of a raster by the rules in the module docstring."""
    names = [d or f"band{i + 1}" for i, d in enumerate(descriptions)] or [f"band{i + 1}" for i in range(count)]

    def plan(idx: Sequence[int], rule: str) -> BandPlan:
        r, g, b = (int(i) for i in idx)
        return BandPlan((r, g, b), rule, (names[r - 1], names[g - 1], names[b - 1]))

    if override is not None:
        if len(override) != 3 or any(not 1 <= int(i) <= count for i in override):
            raise BadInputError(f"bands={tuple(override)!r} must be three 1-based band indexes within 1..{count}")
        return plan(override, "override")
    ci = [c.lower() for c in colorinterp]
    if all(c in ci for c in ("red", "green", "blue")):
        return plan([ci.index("red") + 1, ci.index("green") + 1, ci.index("blue") + 1], "colorinterp")
    if count == 1 and ci and ci[0] == "palette":
        return plan([1, 1, 1], "palette")
    found = {}
    for colour, pattern in _PATTERNS.items():
        hits = [i + 1 for i, d in enumerate(descriptions) if d and pattern.match(d.strip())]
        if len(hits) == 1:
            found[colour] = hits[0]
    if len(found) == 3 and count >= 3:
        return plan([found["red"], found["green"], found["blue"]], "descriptions")
    if count in (12, 13):
        return plan(S2_DEFAULT_RGB, "sentinel2-default")
    if count < 3:
        return plan([1, 1, 1], "grey")
    return plan([1, 2, 3], "first-three")


def auto_stretch(dtype: str, plan: BandPlan, count: int) -> str:
    """The stretch ``auto`` resolves to for a raster (see the module docstring)."""
    kind = np.dtype(dtype).kind
    if dtype == "uint8" or plan.rule == "palette":
        return "none"
    if kind == "f":
        return "reflectance"
    if count >= 4 and plan.rule != "colorinterp":
        return "reflectance"
    return "percentile"


def to_uint8(data: np.ndarray, stretch: str, is_float: bool) -> tuple[np.ndarray, str]:
    """Map a (3, H, W) float array (NaN = no data) to HxWx3 uint8; returns it and the stretch used.

    No-data pixels become 0 (black); the caller reports how many there were.
    """
    valid = np.isfinite(data).all(axis=0)
    if stretch == "none":
        scaled, used = data, "none"
    elif stretch == "reflectance":
        vals = data[:, valid]
        as_reflectance = is_float and (vals.size == 0 or float(np.nanmax(vals)) <= FLOAT_REFLECTANCE_MAX)
        scale = FLOAT_SCALE if as_reflectance else DN_SCALE
        scaled, used = data * (255.0 / scale), f"reflectance/{scale:g}"
    elif stretch == "percentile":
        vals = data[:, valid]
        if vals.size:
            lo, hi = (float(v) for v in np.percentile(vals, [2.0, 98.0]))
        else:
            lo, hi = 0.0, 1.0
        hi = max(hi, lo + 1e-9)  # flat chips map to black instead of dividing by zero
        scaled, used = (data - lo) * (255.0 / (hi - lo)), f"percentile2-98[{lo:.6g},{hi:.6g}]"
    else:
        raise BadInputError(f"unknown stretch {stretch!r}; choose one of {STRETCHES}")
    out = np.where(valid[None], np.clip(np.rint(np.nan_to_num(scaled)), 0, 255), 0).astype(np.uint8)
    return np.ascontiguousarray(out.transpose(1, 2, 0)), used
