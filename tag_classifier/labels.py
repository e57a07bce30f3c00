"""The curated tag labels: parsing, validation and lookup.

The CSV (``data/tag_labels.csv``) has one row per tag pattern:

* ``key=value``  an exact tag, e.g. ``building=house``;
* ``key=*``      every value of one key, e.g. ``name=*`` or ``cables=*``;
* ``prefix:*=*`` every key that starts with ``prefix:``, e.g. ``name:*=*`` matches ``name:fi``.

Lookup order for a tag ``k=v``: the exact row, then ``k=*``, then the longest matching prefix
row (``plant:output:electricity`` tries ``plant:output:*`` before ``plant:*``). The guideline
for deciding labels is ``data/LABELING.md``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import BadInputError, InputFileError

GSD_CLASSES: tuple[float, ...] = (0.1, 0.2, 0.6, 1.0, 10.0)
LABELS_PATH = Path(__file__).resolve().parent / "data" / "tag_labels.csv"
REQUIRED_COLUMNS: tuple[str, ...] = ("tag", "groundable", "max_gsd", "decided_by", "note")
MAX_TAG_PART = 255  # OSM's own limit for keys and values (characters)
WILDCARD = "*"


@dataclass(frozen=True, slots=True)
class TagLabel:
    """One labelled tag pattern; ``row`` is its line number in the CSV (header is line 1)."""

    key: str  # for prefix rows, the key including the trailing ``:*``
    value: str  # ``*`` for key and prefix rows
    groundable: bool
    max_gsd: float | None
    decided_by: str
    note: str = ""
    row: int = 0

    @property
    def tag(self) -> str:
        return f"{self.key}={self.value}"

    @property
    def kind(self) -> str:
        """``exact``, ``key`` (``k=*``) or ``prefix`` (``k:*=*``)."""
        if self.key.endswith(":" + WILDCARD):
            return "prefix"
        return "key" if self.value == WILDCARD else "exact"


def split_tag(text: str, where: str = "tag") -> tuple[str, str]:
    """``"key=value"`` -> ``("key", "value")``, rejecting empty, padded or oversized parts."""
    if not isinstance(text, str) or not text.strip():
        raise BadInputError(f"{where}: empty tag; write it as key=value")
    if "=" not in text:
        raise BadInputError(f"{where}: tag {_short(text)!r} has no '='; write it as key=value")
    key, value = text.split("=", 1)
    check_tag_part(key, "key", where)
    check_tag_part(value, "value", where)
    return key, value


def check_tag_part(part: str, what: str, where: str) -> None:
    if not part:
        raise BadInputError(f"{where}: empty {what}; write the tag as key=value")
    if part != part.strip():
        raise BadInputError(f"{where}: {what} {_short(part)!r} has leading/trailing whitespace; remove it")
    if len(part) > MAX_TAG_PART:
        raise BadInputError(f"{where}: {what} is {len(part)} characters long; OSM allows at most {MAX_TAG_PART}")
    # Real values sometimes hold line breaks or tabs (multi-line notes); other control
    # characters only come from broken encodings.
    allowed = "\n\r\t" if what == "value" else ""
    if any(ord(c) < 32 and c not in allowed for c in part):
        raise BadInputError(f"{where}: {what} {_short(part)!r} contains control characters; remove them")


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def parse_gsd(text: str, where: str) -> float:
    try:
        gsd = float(text)
    except ValueError:
        raise BadInputError(f"{where}: max_gsd {text!r} is not a number; use one of {GSD_CLASSES}") from None
    if not math.isfinite(gsd) or not any(math.isclose(gsd, c) for c in GSD_CLASSES):
        raise BadInputError(f"{where}: max_gsd {text!r} is not one of the classes {GSD_CLASSES}")
    return next(c for c in GSD_CLASSES if math.isclose(gsd, c))


def parse_row(rec: dict[str, str], row: int, origin: str) -> TagLabel:
    where = f"{origin} row {row}"
    tag = (rec.get("tag") or "").strip()
    key, value = split_tag(tag, where)
    if WILDCARD in key and not (key.endswith(":" + WILDCARD) and key.count(WILDCARD) == 1):
        raise BadInputError(f"{where}: key {key!r} may contain '*' only as a trailing ':*' prefix pattern")
    if key.endswith(":" + WILDCARD) and value != WILDCARD:
        raise BadInputError(f"{where}: prefix pattern {tag!r} must have value '*', e.g. {key}=*")
    if WILDCARD in value and value != WILDCARD:
        raise BadInputError(f"{where}: value {value!r} may be '*' (any value) but not contain it")
    where = f"{where} (tag {tag!r})"
    g = (rec.get("groundable") or "").strip().lower()
    if g not in ("yes", "no"):
        raise BadInputError(f"{where}: groundable must be 'yes' or 'no', got {g!r}")
    gsd_text = (rec.get("max_gsd") or "").strip()
    if g == "yes" and not gsd_text:
        raise BadInputError(f"{where}: a groundable tag needs max_gsd, one of {GSD_CLASSES}")
    if g == "no" and gsd_text:
        raise BadInputError(f"{where}: a non-groundable tag must leave max_gsd empty, got {gsd_text!r}")
    decided_by = (rec.get("decided_by") or "").strip()
    if not decided_by:
        raise BadInputError(f"{where}: decided_by is empty; say which guideline rule or decision set it")
    return TagLabel(
        key=key,
        value=value,
        groundable=g == "yes",
        max_gsd=parse_gsd(gsd_text, where) if g == "yes" else None,
        decided_by=decided_by,
        note=(rec.get("note") or "").strip(),
        row=row,
    )


class LabelSet:
    """Validated labels with the three-level lookup described in the module docstring."""

    def __init__(self, labels: list[TagLabel], origin: str = "labels", sha256: str = "") -> None:
        self.origin = origin
        self.sha256 = sha256
        self.labels = list(labels)
        self.exact: dict[tuple[str, str], TagLabel] = {}
        self.by_key: dict[str, TagLabel] = {}
        self.prefixes: dict[str, TagLabel] = {}  # "name:" -> label of name:*=*
        seen: dict[str, TagLabel] = {}
        for lab in self.labels:
            prev = seen.get(lab.tag)
            if prev is not None:
                what = "duplicate" if _same(prev, lab) else "conflicting labels"
                raise BadInputError(
                    f"{origin} row {lab.row} (tag {lab.tag!r}): {what} of row {prev.row}; keep one row per tag"
                )
            seen[lab.tag] = lab
            if lab.kind == "prefix":
                self.prefixes[lab.key[:-1]] = lab
            elif lab.kind == "key":
                self.by_key[lab.key] = lab
            else:
                self.exact[(lab.key, lab.value)] = lab

    def __len__(self) -> int:
        return len(self.labels)

    def lookup(self, key: str, value: str) -> TagLabel | None:
        """The label that decides ``key=value``, or None when no row matches."""
        lab = self.exact.get((key, value))
        if lab is not None:
            return lab
        lab = self.by_key.get(key)
        if lab is not None:
            return lab
        if self.prefixes:
            parts = key.split(":")
            for n in range(len(parts) - 1, 0, -1):  # longest prefix first
                lab = self.prefixes.get(":".join(parts[:n]) + ":")
                if lab is not None:
                    return lab
        return None


def _same(a: TagLabel, b: TagLabel) -> bool:
    return (a.groundable, a.max_gsd) == (b.groundable, b.max_gsd)


def load_labels(path: str | Path | None = None) -> LabelSet:
    """Read and validate a labels CSV (default: the shipped one)."""
    p = Path(path) if path is not None else LABELS_PATH
    if not p.is_file():
        raise InputFileError(f"tag labels file not found: {str(p)!r}. Pass a CSV with columns {REQUIRED_COLUMNS}.")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"tag labels file {str(p)!r} is not UTF-8 ({exc}); re-save it as UTF-8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise BadInputError(f"tag labels file {str(p)!r} lacks column(s) {missing}; needs {REQUIRED_COLUMNS}")
    labels = []
    for rec in reader:
        i = reader.line_num  # the physical line, so quoted multi-line notes keep numbers right
        if None in rec:
            raise BadInputError(f"{p.name} row {i}: more fields than columns; quote values that contain commas")
        labels.append(parse_row(rec, i, p.name))
    if not labels:
        raise BadInputError(f"tag labels file {str(p)!r} has no rows")
    return LabelSet(labels, origin=p.name, sha256=hashlib.sha256(raw).hexdigest())
