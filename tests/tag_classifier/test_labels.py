"""The shipped labels file: size, coverage, validation errors naming rows, and lookup order."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from pipeline.errors import BadInputError, InputFileError
from tag_classifier import curate
from tag_classifier.labels import GSD_CLASSES, LABELS_PATH, load_labels, split_tag

HEADER = "tag,groundable,max_gsd,decided_by,note\n"


def _write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "labels.csv"
    p.write_text(HEADER + body, encoding="utf-8")
    return p


def test_shipped_labels_meet_the_issue_targets() -> None:
    labels = load_labels()
    assert len(labels) >= 2000
    ground = [lab for lab in labels.labels if lab.groundable]
    assert len(ground) >= 500
    assert {lab.max_gsd for lab in ground} == set(GSD_CLASSES)
    negatives = [lab for lab in labels.labels if not lab.groundable]
    assert len(negatives) >= 500
    assert all(lab.decided_by.startswith(("guideline:", "manual")) for lab in labels.labels)


def test_csv_is_what_the_rules_generate() -> None:
    assert curate.main(["--check"]) == 0, "run: python -m tag_classifier.curate"


def test_every_guideline_rule_is_documented() -> None:
    text = (LABELS_PATH.parent / "LABELING.md").read_text(encoding="utf-8")
    rules = {lab.decided_by.split(":", 1)[1] for lab in load_labels().labels if ":" in lab.decided_by}
    missing = [r for r in sorted(rules) if f"**{r}**" not in text and f"| {r}" not in text]
    assert not missing, f"rules used in the CSV but not explained in LABELING.md: {missing}"


@pytest.mark.parametrize(
    "tag",
    [
        "landuse=quarry",
        "resource=bauxite",
        "amenity=fountain",
        "natural=tree",
        "highway=footway",
        "power=plant",
        "plant:source=solar",
        "plant:method=thermal",
        "plant:output:electricity=19.9 MW",
        "power=pole",
        "power=minor_line",
        "cables=3",
        "voltage=16000",
        "man_made=pier",
        "waterway=river",
        "landuse=farmland",
        "crop=cotton",
        "building=yes",
        "building=anything_new",
    ],
)
def test_caption_example_tags_are_groundable(tag: str) -> None:
    lab = load_labels().lookup(*split_tag(tag))
    assert lab is not None and lab.groundable, tag


@pytest.mark.parametrize(
    "tag",
    [
        "name=Kauppatori",
        "name:fi=Kauppatori",
        "name:zh=赫尔辛基",
        "addr:street=Mannerheimintie",
        "addr:housenumber=5",
        "ref=E75",
        "source=survey",
        "source:geometry=x",
        "note=x",
        "fixme=x",
        "wikidata=Q1757",
        "wikipedia=fi:Helsinki",
        "opening_hours=Mo-Fr 09:00-17:00",
        "phone=+358 1",
        "website=https://x",
        "operator=HSL",
        "brand=Lidl",
        "email=a@b",
        "description=x",
        "check_date=2020-01-01",
        "contact:phone=1",
        "payment:visa=yes",
        "shop=supermarket",
    ],
)
def test_hard_negatives_are_not_groundable(tag: str) -> None:
    lab = load_labels().lookup(*split_tag(tag))
    assert lab is not None and not lab.groundable, tag


def test_lookup_prefers_exact_then_key_then_longest_prefix(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        "a=*,yes,10,manual,\na=b,yes,0.1,manual,\nx:*=*,no,,manual,\nx:y:*=*,yes,1,manual,\n",
    )
    labels = load_labels(p)
    assert labels.lookup("a", "b").max_gsd == 0.1  # type: ignore[union-attr]
    assert labels.lookup("a", "c").max_gsd == 10.0  # type: ignore[union-attr]
    assert labels.lookup("x:y:z", "1").groundable  # type: ignore[union-attr]
    assert not labels.lookup("x:q", "1").groundable  # type: ignore[union-attr]
    assert labels.lookup("x", "1") is None  # a prefix row does not match the bare key
    assert labels.lookup("zz", "1") is None


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("a=b,yes,1,manual,\na=b,yes,1,manual,\n", r"row 3 .*duplicate of row 2"),
        ("a=b,yes,1,manual,\nc=d,no,,manual,\na=b,no,,manual,\n", r"row 4 .*conflicting labels of row 2"),
        ("a=b,yes,,manual,\n", r"row 2 .*needs max_gsd"),
        ("a=b,no,1,manual,\n", r"row 2 .*must leave max_gsd empty"),
        ("a=b,yes,3,manual,\n", r"row 2 .*not one of the classes"),
        ("a=b,maybe,1,manual,\n", r"row 2 .*'yes' or 'no'"),
        ("a=b,yes,1,,\n", r"row 2 .*decided_by is empty"),
        ("ab,yes,1,manual,\n", r"row 2: tag 'ab' has no '='"),
        (",yes,1,manual,\n", r"row 2: empty tag"),
        ("=b,yes,1,manual,\n", r"row 2: empty key"),
        ("a*=b,yes,1,manual,\n", r"row 2: key 'a\*'"),
        ("a:*=b,yes,1,manual,\n", r"row 2: prefix pattern"),
        ("a=" + "v" * 300 + ",yes,1,manual,\n", r"row 2: value is 300 characters"),
        ("a=b,yes,1,manual,,extra\n", r"row 2: more fields"),
    ],
)
def test_bad_label_rows_are_rejected_naming_the_row(tmp_path: Path, body: str, match: str) -> None:
    with pytest.raises(BadInputError, match=match):
        load_labels(_write(tmp_path, body))


def test_non_latin_labels_load(tmp_path: Path) -> None:
    labels = load_labels(_write(tmp_path, '"name:ru=*",no,,manual,"имя, на русском"\n'))
    assert labels.labels[0].note == "имя, на русском"


def test_missing_file_and_columns(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not found"):
        load_labels(tmp_path / "nope.csv")
    p = tmp_path / "bad.csv"
    p.write_text("tag,groundable\na=b,yes\n", encoding="utf-8")
    with pytest.raises(BadInputError, match="lacks column"):
        load_labels(p)


def test_generator_rejects_duplicates_across_entries(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(
        "rules: {a: x}\nfamilies:\n  - {rule: a, gsd: 1, key: k, values: 'v w'}\n  - {rule: a, key: k, values: 'v'}\n",
        encoding="utf-8",
    )
    with pytest.raises(BadInputError, match=r"row \d+ \(tag 'k=v'\): conflicting"):
        curate.build_csv(rules)


def test_shipped_csv_is_plain_utf8_csv() -> None:
    with LABELS_PATH.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    tags = [r["tag"] for r in rows]
    assert len(tags) == len(set(tags))
