"""Generate ``data/tag_labels.csv`` from the written rules in ``data/label_rules.yaml``.

The CSV is what the project ships and trains on; the YAML is how it is edited: each entry
applies one guideline rule (see ``data/LABELING.md``) to a curated list of values of one key,
or records a hand decision with its reason. Run ``python -m tag_classifier.curate`` after
editing the YAML; ``--check`` fails when the CSV is out of date (a test runs it).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import BadInputError, SkyScriptError
from tag_classifier.labels import (
    GSD_CLASSES,
    LABELS_PATH,
    REQUIRED_COLUMNS,
    WILDCARD,
    LabelSet,
    TagLabel,
    parse_row,
)

RULES_PATH = Path(__file__).resolve().parent / "data" / "label_rules.yaml"
MANUAL = "manual"


def _words(entry: dict[str, Any], field: str) -> list[str]:
    raw = entry.get(field, "")
    if not isinstance(raw, str):
        raise BadInputError(f"label rules: {field!r} must be a whitespace-separated string, got {raw!r}")
    return raw.split()


def expand(rules_doc: dict[str, Any]) -> list[TagLabel]:
    """Turn the YAML entries into labels (row numbers are assigned when written)."""
    rule_names = set((rules_doc.get("rules") or {}).keys())
    out: list[TagLabel] = []
    for n, entry in enumerate(rules_doc.get("families") or [], start=1):
        where = f"label rules entry {n}"
        rule = entry.get("rule")
        if rule != MANUAL and rule not in rule_names:
            raise BadInputError(f"{where}: rule {rule!r} is not defined under 'rules'")
        note = str(entry.get("note", "") or "")
        if rule == MANUAL and not note:
            raise BadInputError(f"{where}: a manual decision needs a note saying why")
        gsd = entry.get("gsd")
        if gsd is not None and float(gsd) not in GSD_CLASSES:
            raise BadInputError(f"{where}: gsd {gsd!r} is not one of {GSD_CLASSES}")
        decided_by = MANUAL if rule == MANUAL else f"guideline:{rule}"
        pairs: list[tuple[str, str]] = []
        if "key" in entry:
            pairs += [(str(entry["key"]), v) for v in _words(entry, "values")]
        pairs += [(k, WILDCARD) for k in _words(entry, "keys")]
        pairs += [(f"{p}:{WILDCARD}", WILDCARD) for p in _words(entry, "prefixes")]
        if not pairs:
            raise BadInputError(f"{where}: no tags (give key + values, keys or prefixes)")
        for key, value in pairs:
            out.append(
                TagLabel(
                    key=key,
                    value=value,
                    groundable=gsd is not None,
                    max_gsd=None if gsd is None else float(gsd),
                    decided_by=decided_by,
                    note=note,
                )
            )
    return out


def _sort_key(lab: TagLabel) -> tuple[str, int, str]:
    # key rows first within a key, so a reader sees the default before the exceptions
    return (lab.key.lower(), 0 if lab.value == WILDCARD else 1, lab.value)


def _fmt_gsd(g: float | None) -> str:
    return "" if g is None else f"{g:g}"


def render(labels: list[TagLabel]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(REQUIRED_COLUMNS)
    for lab in sorted(labels, key=_sort_key):
        w.writerow([lab.tag, "yes" if lab.groundable else "no", _fmt_gsd(lab.max_gsd), lab.decided_by, lab.note])
    return buf.getvalue()


def build_csv(rules_path: Path = RULES_PATH) -> str:
    """The CSV text the rules produce, validated (duplicates and conflicts raise, naming the row)."""
    try:
        doc = yaml.safe_load(rules_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise BadInputError(f"label rules {str(rules_path)!r} are not valid YAML: {exc}") from None
    labels = expand(doc)
    text = render(labels)
    # Re-parse what we are about to ship: the loader's checks name the CSV row at fault.
    rows = list(csv.DictReader(io.StringIO(text)))
    LabelSet([parse_row(r, i, "generated tag_labels.csv") for i, r in enumerate(rows, start=2)])
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", type=Path, default=RULES_PATH)
    ap.add_argument("--out", type=Path, default=LABELS_PATH)
    ap.add_argument("--check", action="store_true", help="fail if --out differs from what the rules give")
    args = ap.parse_args(argv)
    try:
        text = build_csv(args.rules)
    except SkyScriptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        if current != text:
            print(f"{args.out} is out of date; run: python -m tag_classifier.curate", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    labs = [r for r in csv.DictReader(io.StringIO(text))]
    n_yes = sum(r["groundable"] == "yes" for r in labs)
    print(f"wrote {args.out}: {len(labs)} tags, {n_yes} groundable, {len(labs) - n_yes} not")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
