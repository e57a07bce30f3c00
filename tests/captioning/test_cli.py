"""``skyscript caption`` through the real CLI app (typer's CliRunner)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import captioning.cli as caption_cli
from pipeline.cli import app

from .examples import PAPER_EXAMPLES


class FakeVisibility:
    """Stands in for the labels: hides names/addresses, and ``crop`` at GSD coarser than 10 m."""

    def __init__(self, model: str | None = None) -> None:
        self.model = model
        self.calls: list[float | None] = []

    def describe(self) -> dict[str, Any]:
        return {"kind": "fake", "model": self.model}

    def visible_tags(self, tags: Mapping[str, str], gsd: float | None) -> dict[str, str]:
        self.calls.append(gsd)
        hidden = ("name", "addr:", "ref")
        out = {k: v for k, v in tags.items() if not k.startswith(hidden)}
        if gsd is not None and gsd > 10:
            out.pop("crop", None)
        return out

    def max_gsd(self, tags: Mapping[str, str]) -> float | None:
        return None


@pytest.fixture
def fake_vis(monkeypatch: pytest.MonkeyPatch) -> list[FakeVisibility]:
    made: list[FakeVisibility] = []

    def load(model: str | None) -> FakeVisibility:
        made.append(FakeVisibility(model))
        return made[-1]

    monkeypatch.setattr(caption_cli, "_load_visibility", load)
    return made


def run(lines: list[str] | str, *args: str) -> Result:
    text = lines if isinstance(lines, str) else "".join(line + "\n" for line in lines)
    return CliRunner().invoke(app, ["caption", *args], input=text.encode("utf-8"))


def outputs(result: Result) -> list[dict[str, str]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def example_lines() -> list[str]:
    return [json.dumps({"tags": ex.tags, "surrounding": ex.surrounding}) for ex in PAPER_EXAMPLES]


def check_examples(result: Result) -> None:
    assert result.exit_code == 0, result.stderr
    got = outputs(result)
    assert len(got) == len(PAPER_EXAMPLES)
    for ex, out in zip(PAPER_EXAMPLES, got, strict=True):
        assert set(out) == {"single", "multi"}
        if ex.single is not None:
            assert out["single"] == ex.single
        if ex.multi is not None:
            assert out["multi"] == ex.multi


def test_paper_examples_through_the_cli(fake_vis: list[FakeVisibility]) -> None:
    check_examples(run(example_lines()))


def test_paper_examples_with_the_real_labels() -> None:
    check_examples(run(example_lines()))


def test_paper_examples_through_a_real_process() -> None:
    """The installed entry point end to end: real stdin/stdout pipes, real labels, exit status."""
    stdin = "".join(line + "\n" for line in example_lines()) + "not json\n"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "caption"],
        input=stdin.encode(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert proc.returncode == 1  # the last line is bad
    assert lines[-1] == {"error": "line 7: not valid JSON (Expecting value at column 1)"}
    assert b"line 7" in proc.stderr
    for ex, out in zip(PAPER_EXAMPLES, lines, strict=False):
        assert out["single"] == ex.single or ex.single is None
        assert out["multi"] == ex.multi or ex.multi is None
    assert len(lines) == len(PAPER_EXAMPLES) + 1


def test_real_labels_hide_names_and_addresses() -> None:
    line = {
        "tags": {"building": "yes", "name": "Stockmann", "addr:street": "Aleksanterinkatu", "ref": "7"},
        "surrounding": [{"highway": "footway", "name": "Esplanadi"}],
    }
    result = run([json.dumps(line)])
    assert result.exit_code == 0, result.stderr
    out = outputs(result)[0]
    for word in ("Stockmann", "Aleksanterinkatu", "Esplanadi", "7"):
        assert word not in out["single"] and word not in out["multi"]
    assert out["single"].startswith("building")


def test_tags_are_filtered_by_visibility_with_the_line_gsd(fake_vis: list[FakeVisibility]) -> None:
    lines = [
        json.dumps({"tags": {"landuse": "farmland", "crop": "cotton", "name": "Farm"}, "gsd": 30}),
        json.dumps({"tags": {"landuse": "farmland", "crop": "cotton"}, "surrounding": [{"name": "x"}]}),
    ]
    result = run(lines, "--gsd", "0.5", "--model", "some/dir")
    assert result.exit_code == 0, result.stderr
    assert outputs(result) == [
        {"single": "landuse of farmland", "multi": "landuse of farmland"},
        {"single": "landuse of farmland, crop of cotton", "multi": "landuse of farmland with crop of cotton"},
    ]
    (vis,) = fake_vis
    assert vis.model == "some/dir"
    assert vis.calls == [30.0, 0.5, 0.5]


def test_max_surrounding_and_non_ascii(fake_vis: list[FakeVisibility]) -> None:
    line = {"tags": {"amenity": "fountain"}, "surrounding": [{"natural": "tree"}, {"highway": "footway"}]}
    result = run([json.dumps(line), json.dumps({"tags": {"crop": "sokerijuurikas_ä"}})], "--max-surrounding", "1")
    assert result.exit_code == 0, result.stderr
    first, second = outputs(result)
    assert first["multi"] == "amenity of fountain, surrounded by natural tree"
    assert second["single"] == "crop of sokerijuurikas ä"


def test_no_visible_tags_give_empty_strings(fake_vis: list[FakeVisibility]) -> None:
    result = run([json.dumps({"tags": {"name": "Nothing to see"}}), json.dumps({"tags": {}})])
    assert result.exit_code == 0
    assert outputs(result) == [{"single": "", "multi": ""}] * 2


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"surrounding": []}', 'missing "tags"'),
        ('{"tags": ["building", "yes"]}', '"tags" must be a JSON object'),
        ('{"tags": {"cables": 3}}', "value of 'cables' must be a string, got number 3"),
        ('{"tags": {"building": null}}', "value of 'building' must be a string, got null"),
        ('{"tags": {"building": "yes"}, "surrounding": {"natural": "tree"}}', '"surrounding" must be a JSON array'),
        ('{"tags": {"building": "yes"}, "surrounding": [{"natural": 1}]}', '"surrounding"\\[0\\]: value of'),
        ('{"tags": {"building": "yes"}, "gsd": -1}', '"gsd" must be a positive number'),
        ('{"tags": {"building": "yes"}, "gsd": "0.3"}', '"gsd" must be a positive number'),
    ],
)
def test_bad_lines_are_reported_by_number_and_the_rest_still_captioned(
    fake_vis: list[FakeVisibility], bad: str, message: str
) -> None:
    good = json.dumps({"tags": {"building": "yes"}})
    result = run([good, "", bad, good])
    assert result.exit_code == 1
    got = outputs(result)
    assert len(got) == 3  # the blank line 2 is skipped
    assert got[0] == got[2] == {"single": "building", "multi": "building"}
    assert set(got[1]) == {"error"}
    assert got[1]["error"].startswith("line 3: ")
    assert re.search(message, got[1]["error"])
    assert "line 3" in result.stderr and "1 bad input line" in result.stderr


def test_invalid_utf8_is_a_bad_line(fake_vis: list[FakeVisibility]) -> None:
    data = b'{"tags": {"building": "\xff"}}\n{"tags": {"building": "yes"}}\n'
    result = CliRunner().invoke(app, ["caption"], input=data)
    assert result.exit_code == 1
    got = outputs(result)
    assert "line 1: not UTF-8" in got[0]["error"]
    assert got[1] == {"single": "building", "multi": "building"}


def test_bad_options_fail_before_reading(fake_vis: list[FakeVisibility], tmp_path: Path) -> None:
    result = run([json.dumps({"tags": {"building": "yes"}})], "--gsd", "0")
    assert result.exit_code == 2 and "--gsd" in result.stderr and result.stdout == ""
    result = run([json.dumps({"tags": {"building": "yes"}})], "--rules", str(tmp_path))
    assert result.exit_code == 2 and "phrases.csv" in result.stderr and result.stdout == ""


def test_help_documents_the_error_policy() -> None:
    result = CliRunner().invoke(app, ["caption", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())  # rich wraps to the terminal width
    assert '"error"' in text and "exit code is 1" in text and "Blank input lines are skipped" in text
