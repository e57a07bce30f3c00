"""``make demo`` with no arguments builds the bundled sample: real shards, no network, no ../shared."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import demo
from storage import shards as sh


@pytest.mark.slow
def test_demo_without_arguments_builds_the_bundled_sample(tmp_path: Path) -> None:
    osm, imagery = demo.bundled_sample()
    assert Path(osm).is_file() and Path(imagery.removeprefix("local:")).is_dir()
    out = tmp_path / "demo_out"
    assert demo.main(["--out", str(out)]) == 0
    samples = list(sh.iter_samples(out / "shards"))
    assert len(samples) >= 100  # 155 buildings; a few sit on nodata edges
    assert all("building" in s["txt"] for s in samples)
    assert (out / "preview.png").stat().st_size > 10_000
    assert demo.main(["--out", str(out)]) == 0  # re-running resumes: nothing rebuilt, same shards
    assert len(list(sh.iter_samples(out / "shards"))) == len(samples)


def test_demo_needs_both_or_neither(tmp_path: Path) -> None:
    assert demo.main(["--osm", "x.osm", "--out", str(tmp_path / "o")]) == 2
