"""Property tests: whatever tags come in, captions keep their shape."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from captioning.assemble import (
    OBJECT_SEP,
    caption_multi,
    caption_single,
    humanise_key,
    phrase,
    tag_phrase,
    tag_phrases,
)
from captioning.rules import default_rules, negates

RULES = default_rules()
KNOWN_KEYS = sorted({k for k, _ in RULES.phrases if k != "*"} | set(RULES.feature_keys))
KNOWN_VALUES = sorted({v for _, v in RULES.phrases if v != "*"})

_word = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=8).filter(lambda w: w.strip("_"))
# Keys like OSM's: words joined by ':' (plant:output:electricity), plus every key the rules know.
key_st = st.one_of(st.sampled_from(KNOWN_KEYS), st.lists(_word, min_size=1, max_size=3).map(":".join)).filter(
    # a key named "yes" may say yes; only raw yes *values* are banned
    lambda k: not RULES.never_captioned(k) and "yes" not in k
)
value_st = st.one_of(
    st.sampled_from(KNOWN_VALUES),
    st.sampled_from(["yes", "no", "Yes", "true", "false", "-1", "12", "19.9 MW", "yes;no", "yes;x", "#a0b0c0"]),
    st.text(alphabet=string.ascii_letters + string.digits + "_ .-;", min_size=1, max_size=20).filter(
        lambda v: any(c.isalnum() for c in v)
    ),
)
tags_st = st.dictionaries(key_st, value_st, min_size=1, max_size=6)


def _no_absence_described(text: str, tags: dict[str, str]) -> None:
    """No negated tag reads as "no KEY" anywhere in the object's own phrase."""
    for k, v in tags.items():
        if negates(v) and humanise_key(k):
            absent = f"no {humanise_key(k)}"
            assert not text.startswith(absent) and f", {absent}" not in text and f" with {absent}" not in text, tags


@settings(max_examples=300, deadline=None)
@given(tags=tags_st, around=st.lists(st.dictionaries(key_st, value_st, max_size=4), max_size=5))
def test_captions_are_clean_and_never_empty(tags: dict[str, str], around: list[dict[str, str]]) -> None:
    single = caption_single(tags)
    multi = caption_multi(tags, around)
    if all(negates(v) for v in tags.values()):
        assert not multi or multi.startswith(single)
        _no_absence_described(single, tags)
        return  # only absences: nothing to say, or only what an exact phrase makes visible
    for text in (single, multi):
        assert text, tags
        _no_absence_described(text, tags)
        assert "_" not in text
        assert ":" not in text  # generated values carry no ':', so any ':' would come from a key
        assert text == " ".join(text.split())  # no doubled, leading or trailing spaces
        assert "yes" not in text.lower().replace(",", " ").replace(";", " ").split()
    assert multi.startswith(phrase(tags))
    # ';' only ever separates neighbours: values' own ';' became ' and '
    assert multi.count(OBJECT_SEP) == max(0, len({phrase(t) for t in around} - {""}) - 1)


@settings(max_examples=200, deadline=None)
@given(tags=tags_st)
def test_the_feature_key_leads_whatever_the_input_order(tags: dict[str, str]) -> None:
    lead = min(tags, key=RULES.feature_rank)
    head = tag_phrase(lead, tags[lead])
    if RULES.feature_rank(lead) == len(RULES.feature_keys) or not head:
        return  # no feature key, or it reads as nothing: input order decides
    for order in (tags, dict(reversed(list(tags.items())))):
        assert tag_phrases(order)[0] == head


@settings(max_examples=300, deadline=None)
@given(key=st.one_of(st.sampled_from([p.replace("*", "x") for p in RULES.never_patterns]), key_st, _word))
def test_never_caption_patterns_behave_like_shell_globs(key: str) -> None:
    from fnmatch import fnmatchcase

    assert RULES.never_captioned(key) == any(fnmatchcase(key, p) for p in RULES.never_patterns)
