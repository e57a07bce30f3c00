"""Caption rules, loaded from the CSV files in ``captioning/data/``.

The rules grow by rows (one per key template, per ``key=value`` override, per feature key,
per never-captioned key pattern), so they live in data, not code:

- ``phrases.csv`` (``key,value,phrase,unit,note``): how one tag reads. ``value`` ``*`` is the
  key's template; a concrete value overrides it; key ``*`` holds the defaults. ``phrase`` may use
  ``{key}`` and ``{value}`` (both humanised); an empty phrase drops the tag (unless nothing else
  is left to say). ``unit`` is appended to a bare-number value (``height=12`` -> ``12 m``).
- ``feature_keys.csv`` (``key,note``): keys that say what an object *is*, most defining first.
  They lead the caption; every other tag follows in input order.
- ``never_caption.csv`` (``pattern,reason``): shell-style key patterns (names, addresses, refs,
  sources, ...) that never reach a caption, whatever the visibility labels say.
- ``colours.csv`` (``name,hex,note``): a palette; a hex colour value (``roof:colour=#b4c9b3``)
  reads as the nearest name (``light grey roof``). Optional in a custom rules folder: without it,
  hex colour tags are left out rather than shown as codes.
"""

from __future__ import annotations

import csv
import fnmatch
import re
import string
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from pipeline.errors import ConfigError, InputFileError

ANY = "*"
PLACEHOLDERS = frozenset({"key", "value"})
BOOLEAN_VALUES = frozenset({"yes", "no", "true", "false"})
# Values that say the thing is absent. A caption describes what the image shows, never what it
# does not, so such tags stay out of captions unless an exact phrases.csv row says something
# visible about them (``oneway=no`` reads "two way", ``covered=no`` "uncovered").
NEGATING_VALUES = frozenset({"no", "none", "false", "0", "off"})


def negates(value: str) -> bool:
    """True when an OSM value denies the feature (``building=no``, ``lit=none``, ``levels=0``)."""
    first = value.split(";", 1)[0].strip().lower()
    return first in NEGATING_VALUES
PHRASES_FILE = "phrases.csv"
FEATURE_KEYS_FILE = "feature_keys.csv"
NEVER_FILE = "never_caption.csv"
COLOURS_FILE = "colours.csv"

_PHRASE_COLUMNS = ("key", "value", "phrase", "unit", "note")
_FEATURE_COLUMNS = ("key", "note")
_NEVER_COLUMNS = ("pattern", "reason")
_COLOUR_COLUMNS = ("name", "hex", "note")
_HEX = re.compile(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})")
RGB = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class PhraseRule:
    """How one ``key=value`` (or ``key=*``) reads in a caption."""

    phrase: str  # "" drops the tag
    unit: str = ""


@dataclass(frozen=True)
class CaptionRules:
    """All caption rules; immutable, so one instance can be shared by every worker."""

    phrases: dict[tuple[str, str], PhraseRule]
    feature_keys: tuple[str, ...]
    never_patterns: tuple[str, ...]
    colours: tuple[tuple[str, RGB], ...] = ()
    origin: str = field(default="captioning/data", compare=False)
    _feature_rank: dict[str, int] = field(init=False, repr=False, compare=False)
    _never_exact: frozenset[str] = field(init=False, repr=False, compare=False)
    _never_globs: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for value, example in ((ANY, "{key} of {value}"), ("yes", "{key}"), ("no", "no {key}")):
            if (ANY, value) not in self.phrases:
                raise ConfigError(
                    f"caption rules in {self.origin} lack the default row '*,{value}' in {PHRASES_FILE}; "
                    f"add e.g. '*,{value},{example},,'"
                )
        rank = {k: i for i, k in enumerate(self.feature_keys)}
        exact = frozenset(p for p in self.never_patterns if not _is_glob(p))
        # One compiled alternation instead of a fnmatch loop: this runs for every tag of every object.
        globs = [fnmatch.translate(p) for p in self.never_patterns if _is_glob(p)]
        compiled = re.compile("|".join(f"(?:{g})" for g in globs)) if globs else None
        object.__setattr__(self, "_feature_rank", rank)
        object.__setattr__(self, "_never_exact", exact)
        object.__setattr__(self, "_never_globs", compiled)

    def feature_rank(self, key: str) -> int:
        """Position in the feature-key list; attributes rank after every feature key."""
        return self._feature_rank.get(key, len(self.feature_keys))

    def never_captioned(self, key: str) -> bool:
        """True for keys that must never appear in a caption (names, addresses, ids, ...)."""
        if key in self._never_exact:
            return True
        return self._never_globs is not None and self._never_globs.match(key) is not None

    def colour_name(self, value: str) -> str | None:
        """Nearest palette name for a hex colour (``#b4c9b3``); None if ``value`` is not one.

        Returns '' when there is no palette: the caller leaves the tag out (never a raw code).
        """
        if not value.startswith("#"):
            return None
        rgb = _parse_hex(value)
        if rgb is None:
            return None
        if not self.colours:
            return ""
        return min(self.colours, key=lambda c: sum((a - b) ** 2 for a, b in zip(c[1], rgb, strict=True)))[0]

    def lookup(self, key: str, value: str, boolean: str | None) -> PhraseRule:
        """The rule for a tag. ``boolean`` is ``"yes"``/``"no"`` when the value is one.

        Order: exact ``key=value``; then, for boolean values, ``key=yes|no`` and ``*=yes|no``
        (so a key template such as ``{value} bridge`` never shows a raw ``yes``); then ``key=*``;
        then ``*=*``.
        """
        p = self.phrases
        for candidate in (
            (key, value),
            (key, value.lower()),
            *(((key, boolean), (ANY, boolean)) if boolean else ()),
            (key, ANY),
        ):
            rule = p.get(candidate)
            if rule is not None:
                return rule
        return p[(ANY, ANY)]


def _parse_hex(text: str) -> RGB | None:
    m = _HEX.fullmatch(text.strip())
    if m is None:
        return None
    digits = m.group(1)
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _read_csv(text: str, origin: str, columns: tuple[str, ...]) -> list[dict[str, str]]:
    reader = csv.DictReader(text.splitlines())
    header = tuple(reader.fieldnames or ())
    if header != columns:
        raise ConfigError(f"{origin}: header must be {','.join(columns)!r}, got {','.join(header)!r}")
    rows = []
    for lineno, row in enumerate(reader, start=2):
        if None in row or any(v is None for v in row.values()):
            raise ConfigError(
                f"{origin} line {lineno}: expected {len(columns)} columns ({','.join(columns)}); "
                "quote fields that contain commas"
            )
        row["_line"] = str(lineno)
        rows.append(row)
    return rows


def _check_phrase(phrase: str, where: str) -> None:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(phrase) if f is not None]
    except ValueError as exc:
        raise ConfigError(f"{where}: phrase {phrase!r} is not a valid template ({exc})") from exc
    bad = sorted(set(fields) - PLACEHOLDERS)
    if bad:
        raise ConfigError(
            f"{where}: phrase {phrase!r} uses unknown placeholder(s) {bad}; only {{key}} and {{value}} exist"
        )


def parse_rules(
    phrases_csv: str, feature_keys_csv: str, never_csv: str, origin: str, colours_csv: str | None = None
) -> CaptionRules:
    """Build :class:`CaptionRules` from the CSV texts, with errors naming file and line."""
    phrases: dict[tuple[str, str], PhraseRule] = {}
    for row in _read_csv(phrases_csv, f"{origin}/{PHRASES_FILE}", _PHRASE_COLUMNS):
        where = f"{origin}/{PHRASES_FILE} line {row['_line']}"
        key, value, phrase = row["key"].strip(), row["value"].strip(), row["phrase"].strip()
        if not key or not value:
            raise ConfigError(f"{where}: key and value must not be empty (use '*' for any)")
        if (key, value) in phrases:
            raise ConfigError(f"{where}: duplicate rule for {key}={value}; keep one row per pair")
        _check_phrase(phrase, where)
        if value.lower() in BOOLEAN_VALUES and "{value}" in phrase:
            raise ConfigError(f"{where}: a rule for {key}={value} must not show the raw value; drop {{value}}")
        phrases[(key, value)] = PhraseRule(phrase=phrase, unit=row["unit"].strip())

    feature_keys: list[str] = []
    for row in _read_csv(feature_keys_csv, f"{origin}/{FEATURE_KEYS_FILE}", _FEATURE_COLUMNS):
        key = row["key"].strip()
        if not key or key in feature_keys:
            raise ConfigError(f"{origin}/{FEATURE_KEYS_FILE} line {row['_line']}: empty or repeated key {key!r}")
        feature_keys.append(key)

    never: list[str] = []
    for row in _read_csv(never_csv, f"{origin}/{NEVER_FILE}", _NEVER_COLUMNS):
        pattern = row["pattern"].strip()
        if not pattern:
            raise ConfigError(f"{origin}/{NEVER_FILE} line {row['_line']}: empty pattern")
        never.append(pattern)

    colours: list[tuple[str, RGB]] = []
    if colours_csv is not None:
        for row in _read_csv(colours_csv, f"{origin}/{COLOURS_FILE}", _COLOUR_COLUMNS):
            name, rgb = row["name"].strip(), _parse_hex(row["hex"])
            if not name or rgb is None or not row["hex"].strip().startswith("#"):
                raise ConfigError(
                    f"{origin}/{COLOURS_FILE} line {row['_line']}: need a name and a hex colour like #1a2b3c"
                )
            colours.append((name, rgb))

    return CaptionRules(phrases, tuple(feature_keys), tuple(never), tuple(colours), origin=origin)


def load_rules(folder: str | Path | None = None) -> CaptionRules:
    """Rules from ``folder`` (holding the three CSV files), or the packaged defaults."""
    if folder is None:
        return default_rules()
    base = Path(folder)
    texts = []
    for name in (PHRASES_FILE, FEATURE_KEYS_FILE, NEVER_FILE):
        path = base / name
        if not path.is_file():
            raise InputFileError(
                f"caption rules file not found: {str(path)!r}. A rules folder needs "
                f"{PHRASES_FILE}, {FEATURE_KEYS_FILE} and {NEVER_FILE} (copy captioning/data/)."
            )
        texts.append(path.read_text(encoding="utf-8"))
    colours = base / COLOURS_FILE
    colours_csv = colours.read_text(encoding="utf-8") if colours.is_file() else None
    return parse_rules(texts[0], texts[1], texts[2], origin=str(base), colours_csv=colours_csv)


@lru_cache(maxsize=1)
def default_rules() -> CaptionRules:
    """The packaged rules, parsed once per process (they are immutable)."""
    data = resources.files("captioning") / "data"
    texts = [(data / n).read_text(encoding="utf-8") for n in (PHRASES_FILE, FEATURE_KEYS_FILE, NEVER_FILE)]
    colours = (data / COLOURS_FILE).read_text(encoding="utf-8")
    return parse_rules(texts[0], texts[1], texts[2], origin="captioning/data", colours_csv=colours)
