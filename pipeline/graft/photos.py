"""Ground photos: the record, and local tables of geotagged photos (CSV or parquet).

Column names are detected case-insensitively (or given explicitly); dates may be epoch
milliseconds, epoch seconds or ISO strings. Invalid rows (impossible coordinates, unparseable
dates) and duplicate photo ids become *rejected* rows with a reason, never crashes; a table
whose id/lat/lon columns cannot be found is a one-line :class:`BadInputError` listing the
columns that were found.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import BadInputError, InputFileError

# The names first; a few common spellings after them (matching ignores case, "_", "-", spaces).
ID_NAMES = ("id", "photo_id", "img_id", "image_id", "flickr_id")
LAT_NAMES = ("lat", "latitude")
LON_NAMES = ("lon", "lng", "longitude", "long")
DATE_NAMES = ("taken", "datetaken", "date", "captured_at", "taken_at", "datetime", "timestamp")
PATH_NAMES = ("path", "image_path", "file", "filename", "filepath", "image")
URL_NAMES = ("url", "image_url", "photo_url", "url_z", "url_c", "url_m")
INDOOR_NAMES = ("prob_indoor", "indoor", "p_indoor", "indoor_prob", "indoor_probability")
ACCURACY_NAMES = ("accuracy",)

# Epoch numbers above this are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973); above
# 1e14 microseconds.
_MS_THRESHOLD = 1e11
_US_THRESHOLD = 1e14
_NUMERIC = re.compile(r"^[-+]?\d+(\.\d*)?([eE][-+]?\d+)?$")
_FLICKR_FILE = re.compile(r"^(\d+)_([0-9a-f]+)_(\d+)(?:_[^.]*)?(?:\.\w+)?$")


@dataclass(frozen=True, slots=True)
class GroundPhoto:
    """One geotagged ground photo. ``date`` is a naive ISO datetime (local time as taken) or None."""

    photo_id: str
    lon: float
    lat: float
    date: str | None = None
    path: str | None = None  # a local image file
    url: str | None = None  # where the pixels can be fetched
    indoor: float | None = None  # probability the photo is indoors
    accuracy: int | None = None  # Flickr geotag accuracy (1-16) when known


@dataclass(frozen=True, slots=True)
class Rejected:
    """A photo row that cannot be used, with a stable ``error_code``."""

    photo_id: str
    error_code: str  # duplicate | bad_coordinates | bad_date | indoor | no_id
    error_message: str
    lon: float | None = None
    lat: float | None = None


@dataclass(frozen=True)
class PhotoTable:
    """Usable photos, rejected rows, and counts for the stats file."""

    photos: list[GroundPhoto]
    rejected: list[Rejected] = field(default_factory=list)
    columns: dict[str, str | None] = field(default_factory=dict)  # role -> source column
    rows_in: int = 0

    def counts(self) -> dict[str, Any]:
        tally = Counter(r.error_code for r in self.rejected)
        return {
            "rows_in": self.rows_in,
            "usable": len(self.photos),
            "rejected": dict(sorted(tally.items())),
            "undated": sum(p.date is None for p in self.photos),
        }


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """Explicit column names (``None``: detect); ``photo_dir`` resolves ids/paths to files."""

    id_col: str | None = None
    lat_col: str | None = None
    lon_col: str | None = None
    date_col: str | None = None
    path_col: str | None = None
    url_col: str | None = None
    indoor_col: str | None = None
    photo_dir: str | None = None
    max_indoor: float | None = None


def _norm(name: str) -> str:
    """Case, spaces, ``_`` and ``-`` do not matter: ``PhotoID`` = ``photo_id`` = ``Photo Id``."""
    return re.sub(r"[\s_\-]", "", str(name)).lower()


def _pick(columns: Sequence[str], given: str | None, names: Iterable[str], role: str, flag: str,
          required: bool) -> str | None:
    lower = {_norm(c): c for c in reversed(columns)}  # first column wins on a clash
    if given is not None:
        if given in columns:
            return given
        if _norm(given) in lower:
            return lower[_norm(given)]
        raise BadInputError(f"{flag} {given!r} is not a column of the photo table; found: {', '.join(columns)}")
    for n in names:
        if _norm(n) in lower:
            return lower[_norm(n)]
    if required:
        raise BadInputError(
            f"cannot find the photo table's {role} column (looked for {'|'.join(names)}); found: "
            f"{', '.join(map(str, columns))}. Name it with {flag}."
        )
    return None


def parse_date(value: Any) -> tuple[str | None, bool]:
    """(naive ISO datetime or None, ok). Numbers are epoch ms or s; strings ISO-ish; blanks are undated."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None, True
    if isinstance(value, pd.Timestamp | datetime):
        ts = pd.Timestamp(value)
        if ts is pd.NaT:
            return None, True
        if ts.tzinfo is not None:
            ts = ts.tz_convert(UTC).tz_localize(None)
        return ts.strftime("%Y-%m-%dT%H:%M:%S"), True
    if isinstance(value, int | float | np.integer | np.floating):
        v = float(value)
        if not math.isfinite(v):
            return None, True
        secs = v / 1e6 if abs(v) >= _US_THRESHOLD else v / 1000.0 if abs(v) >= _MS_THRESHOLD else v
        try:
            return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S"), True
        except (OverflowError, OSError, ValueError):
            return None, False
    text = str(value).strip()
    if not text or text.lower() in ("nan", "none", "null", "nat") or text.startswith("0000-00-00"):
        return None, True
    if _NUMERIC.match(text):
        return parse_date(float(text))
    try:
        ts = pd.Timestamp(text)
    except (ValueError, OverflowError):
        return None, False
    if ts is pd.NaT:
        return None, False
    return parse_date(ts)


def flickr_url_from_filename(name: str) -> str | None:
    """``{id}_{secret}_{server}_{owner}.jpg`` (im2gps/YFCC file names) → the static Flickr URL."""
    m = _FLICKR_FILE.match(Path(name).name)
    if m is None:
        return None
    pid, secret, server = m.groups()
    return f"https://live.staticflickr.com/{server}/{pid}_{secret}.jpg"


def _valid_coords(lon: float, lat: float) -> str | None:
    if not (math.isfinite(lon) and math.isfinite(lat)):
        return "coordinates are missing or not numbers"
    if not (-90.0 <= lat <= 90.0):
        return f"latitude {lat} outside [-90, 90]"
    if not (-180.0 <= lon <= 180.0):
        return f"longitude {lon} outside [-180, 180]"
    if lon == 0.0 and lat == 0.0:
        return "coordinates are exactly (0, 0) (null island: a missing geotag)"
    return None


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV/TSV or parquet file as a DataFrame of raw values (ids kept as text)."""
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"photo table not found: {str(p)!r}. Pass a CSV or parquet file of geotagged photos.")
    if not p.is_file():
        raise InputFileError(f"photo table is not a file: {str(p)!r}")
    suffix = "".join(p.suffixes[-2:]).lower()
    try:
        if suffix.endswith((".parquet", ".pq")):
            return pd.read_parquet(p)
        if suffix.endswith((".csv", ".csv.gz", ".tsv", ".txt", ".tsv.gz")):
            sep = "\t" if ".tsv" in suffix else None
            return pd.read_csv(p, sep=sep, engine="python", dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (ValueError, OSError) as exc:
        raise InputFileError(f"cannot read photo table {str(p)!r}: {exc}") from exc
    raise BadInputError(f"photo table {str(p)!r}: unknown format {suffix or '(none)'}; use .csv, .tsv or .parquet")


def load_photo_table(path: str | Path, spec: ColumnSpec | None = None) -> PhotoTable:
    """Read and validate a local photo table (see the module docstring)."""
    spec = spec or ColumnSpec()
    df = read_table(path)
    return photos_from_frame(df, spec, base_dir=Path(path).parent)


def photos_from_frame(df: pd.DataFrame, spec: ColumnSpec, base_dir: Path | None = None) -> PhotoTable:
    cols = [str(c) for c in df.columns]
    df.columns = cols
    roles = {
        "id": _pick(cols, spec.id_col, ID_NAMES, "photo id", "--id-col", True),
        "lat": _pick(cols, spec.lat_col, LAT_NAMES, "latitude", "--lat-col", True),
        "lon": _pick(cols, spec.lon_col, LON_NAMES, "longitude", "--lon-col", True),
        "date": _pick(cols, spec.date_col, DATE_NAMES, "date", "--date-col", False),
        "path": _pick(cols, spec.path_col, PATH_NAMES, "image path", "--path-col", False),
        "url": _pick(cols, spec.url_col, URL_NAMES, "image URL", "--url-col", False),
        "indoor": _pick(cols, spec.indoor_col, INDOOR_NAMES, "indoor probability", "--indoor-col", False),
        "accuracy": _pick(cols, None, ACCURACY_NAMES, "accuracy", "", False),
    }
    if spec.max_indoor is not None and roles["indoor"] is None:
        raise BadInputError(
            f"--max-indoor needs an indoor probability column ({'|'.join(INDOOR_NAMES)}); found: {', '.join(cols)}"
        )
    photo_dir = Path(spec.photo_dir) if spec.photo_dir else None
    photos: list[GroundPhoto] = []
    rejected: list[Rejected] = []
    seen: set[str] = set()
    records = df.to_dict("records")
    for row in records:
        pid = _text(row[roles["id"]])  # type: ignore[index]
        lon, lat = _number(row[roles["lon"]]), _number(row[roles["lat"]])  # type: ignore[index]
        if not pid:
            rejected.append(Rejected("", "no_id", "row has an empty photo id", lon, lat))
            continue
        if pid in seen:
            rejected.append(Rejected(pid, "duplicate", f"photo id {pid} appears more than once", lon, lat))
            continue
        seen.add(pid)
        why = _valid_coords(lon, lat)
        if why:
            rejected.append(Rejected(pid, "bad_coordinates", why, None, None))
            continue
        date, ok = parse_date(row[roles["date"]]) if roles["date"] else (None, True)
        if not ok:
            raw = row[roles["date"]]  # type: ignore[index]
            rejected.append(Rejected(pid, "bad_date", f"cannot parse date {raw!r}", lon, lat))
            continue
        indoor = _number(row[roles["indoor"]]) if roles["indoor"] else float("nan")
        if spec.max_indoor is not None and math.isfinite(indoor) and indoor > spec.max_indoor:
            rejected.append(Rejected(pid, "indoor", f"indoor probability {indoor:.3f} > {spec.max_indoor}", lon, lat))
            continue
        photos.append(
            GroundPhoto(
                photo_id=pid,
                lon=lon,
                lat=lat,
                date=date,
                path=_resolve_path(row, roles, pid, photo_dir, base_dir),
                url=_text(row[roles["url"]]) if roles["url"] else flickr_url_from_filename(pid),  # type: ignore[index]
                indoor=indoor if math.isfinite(indoor) else None,
                accuracy=_int_or_none(row[roles["accuracy"]]) if roles["accuracy"] else None,  # type: ignore[index]
            )
        )
    return PhotoTable(photos, rejected, {k: v for k, v in roles.items()}, rows_in=len(records))


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _int_or_none(value: Any) -> int | None:
    v = _number(value)
    return int(v) if math.isfinite(v) else None


def _resolve_path(row: dict[str, Any], roles: dict[str, str | None], pid: str, photo_dir: Path | None,
                  base_dir: Path | None) -> str | None:
    """The local image file of a row: its path column, else ``photo_dir/<id>`` when that exists."""
    col = roles["path"]
    raw = _text(row[col]) if col else ""
    if raw:
        p = Path(raw)
        if not p.is_absolute():
            p = (photo_dir or base_dir or Path.cwd()) / p
        return str(p)
    if photo_dir is not None:
        return str(photo_dir / pid)
    return None
