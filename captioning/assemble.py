"""Caption assembly: visible tags in, SkyScript-style single- and multi-object captions out.

- Single-object caption: one phrase per tag, joined with ``", "``:
  ``landuse of farmland, crop of cotton``.
- Multi-object caption: the object's phrase (first tag, then ``" with "`` the second and
  ``" and "`` each later one), then ``", surrounded by "`` and the neighbours' phrases joined
  with ``"; "``: ``power pole, surrounded by power minor line with cables of 3 and voltage of 16000``.

Tag order: feature keys (``feature_keys.csv``, most defining first) lead; every other tag
follows in input order. How each tag reads comes from ``phrases.csv`` (see :mod:`captioning.rules`).

Callers pass tags already filtered for visibility; assembly still refuses names, addresses,
refs, sources and the like (``never_caption.csv``), URLs and long free text, so a caption
never leaks them even when a label is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from captioning.rules import ANY, CaptionRules, PhraseRule, default_rules, negates
from pipeline.errors import BadInputError

SURROUNDED_BY = ", surrounded by "
OBJECT_SEP = "; "
TAG_SEP = ", "
FIRST_EXTRA = " with "
LATER_EXTRA = " and "

# Values longer than this are free text (descriptions, inscriptions), never a visual property.
MAX_VALUE_CHARS = 64
_URLISH = re.compile(r"https?://|www\.", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_BOOLEANS = {"yes": "yes", "true": "yes", "no": "no", "false": "no"}


def humanise_key(key: str) -> str:
    """``plant:output:electricity`` -> ``plant output electricity``; ``man_made`` -> ``man made``."""
    return " ".join(key.replace("_", " ").replace(":", " ").split())


def _parts(value: str) -> list[str]:
    """OSM multi-values (``a;b``), each humanised, empty ones dropped."""
    parts = [" ".join(p.replace("_", " ").split()) for p in value.split(";")]
    return [p for p in parts if p]


def humanise_value(value: str) -> str:
    """``minor_line`` -> ``minor line``; multi-values ``a;b`` -> ``a and b``.

    ``;`` must go: it separates objects in the multi-object caption. A boolean among real values
    (``bridge=yes;viaduct``) adds nothing and would show a raw ``yes``, so it is dropped.
    """
    parts = _parts(value)
    words = [p for p in parts if p.lower() not in _BOOLEANS]
    return LATER_EXTRA.join(words or parts)


def _boolean(value: str) -> str | None:
    """``yes``/``no`` for boolean values, including multi-values made only of booleans."""
    parts = _parts(value)
    if parts and all(p.lower() in _BOOLEANS for p in parts):
        return _BOOLEANS[parts[0].lower()]
    return None


def _render(rule: PhraseRule, key: str, value: str, rules: CaptionRules) -> str:
    colour = rules.colour_name(value)
    if colour == "":
        return ""  # a hex code and no palette to name it: leave the tag out
    shown = colour or humanise_value(value)
    if rule.unit and _NUMBER.fullmatch(shown):
        shown = f"{shown} {rule.unit}"
    text = rule.phrase.format(key=humanise_key(key), value=shown)
    return " ".join(text.split())


def _captionable(key: str, value: object, rules: CaptionRules) -> bool:
    if not isinstance(key, str) or not isinstance(value, str):
        raise BadInputError(
            f"tag {key!r}={value!r}: tag keys and values must be strings (OSM tags are text); "
            "convert numbers to text first"
        )
    if rules.never_captioned(key) or not humanise_key(key):
        return False
    if len(value) > MAX_VALUE_CHARS or _URLISH.search(value):
        return False
    if negates(value) and not _positive_phrase(key, value, rules):
        return False  # an absence: "no building", "no street lighting" describe nothing visible
    return bool(humanise_value(value))


def _positive_phrase(key: str, value: str, rules: CaptionRules) -> bool:
    """An exact phrases.csv row that says something visible about a negating value."""
    rule = rules.phrases.get((key, value)) or rules.phrases.get((key, value.lower()))
    return rule is not None and bool(rule.phrase) and not rule.phrase.lower().startswith("no ")


def ordered_tags(tags: Mapping[str, str], rules: CaptionRules | None = None) -> list[tuple[str, str]]:
    """Captionable tags in caption order: feature keys by rank first, then the rest as given."""
    rules = rules or default_rules()
    kept = [(k, v) for k, v in tags.items() if _captionable(k, v, rules)]
    # sorted() is stable, so equal ranks (all attributes) keep their input order.
    return sorted(kept, key=lambda kv: rules.feature_rank(kv[0]))


def tag_phrase(key: str, value: str, rules: CaptionRules | None = None) -> str:
    """How one tag reads on its own terms: '' when the rules drop it or it is never captioned."""
    rules = rules or default_rules()
    if not _captionable(key, value, rules):
        return ""
    return _render(rules.lookup(key, value, _boolean(value)), key, value, rules)


def tag_phrases(tags: Mapping[str, str], rules: CaptionRules | None = None) -> list[str]:
    """One phrase per captionable tag, in caption order, without repeats.

    Rules may drop a tag (empty phrase, e.g. ``area=yes``); when that would leave nothing
    although captionable tags exist, the first tag is said with the default rule instead,
    so a non-empty captionable tag set never yields an empty caption.
    """
    rules = rules or default_rules()
    ordered = ordered_tags(tags, rules)
    out: list[str] = []
    for key, value in ordered:
        text = tag_phrase(key, value, rules)
        if text and text not in out:
            out.append(text)
    if not out and ordered:
        key, value = ordered[0]
        boolean = _boolean(value)
        fallback = rules.lookup(ANY, value, boolean) if boolean else rules.phrases[(ANY, ANY)]
        text = _render(fallback, key, value, rules)
        if text:
            out.append(text)
    return out


def _join_object(parts: Sequence[str]) -> str:
    if not parts:
        return ""
    text = parts[0]
    if len(parts) > 1:
        text += FIRST_EXTRA + parts[1]
    for extra in parts[2:]:
        text += LATER_EXTRA + extra
    return text


def phrase(tags: Mapping[str, str], rules: CaptionRules | None = None) -> str:
    """One object as it reads inside a multi-object caption: ``X with Y and Z`` ('' when none)."""
    return _join_object(tag_phrases(tags, rules))


def caption_single(visible_tags: Mapping[str, str], rules: CaptionRules | None = None) -> str:
    """``landuse of quarry, resource of bauxite``; '' when no tag is captionable."""
    return TAG_SEP.join(tag_phrases(visible_tags, rules))


def caption_multi(
    visible_tags: Mapping[str, str],
    surrounding: Sequence[Mapping[str, str]],
    max_surrounding: int | None = None,
    rules: CaptionRules | None = None,
) -> str:
    """The object's phrase, then ``, surrounded by`` its neighbours' phrases joined with ``; ``.

    ``surrounding`` holds the neighbours' visible tags, most relevant first (the overlay's
    order). Neighbours with nothing captionable are skipped; a phrase already used by an
    earlier neighbour is skipped too (ten identical ``building`` entries say no more than one),
    keeping first-seen order. The neighbour phrase may equal the object's own: a building among
    buildings is worth saying. ``max_surrounding`` caps the neighbours kept after skipping
    (``None``: no cap). Returns '' when the object itself has nothing captionable.
    """
    if max_surrounding is not None and max_surrounding < 0:
        raise BadInputError(f"max_surrounding must be >= 0 or None, got {max_surrounding}")
    rules = rules or default_rules()
    head = phrase(visible_tags, rules)
    if not head:
        return ""
    around: list[str] = []
    for tags in surrounding:
        if max_surrounding is not None and len(around) >= max_surrounding:
            break
        text = phrase(tags, rules)
        if text and text not in around:
            around.append(text)
    if not around:
        return head
    return head + SURROUNDED_BY + OBJECT_SEP.join(around)
