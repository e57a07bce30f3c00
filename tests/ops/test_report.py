"""``skyscript report OUT --out report.html``: content, self-containment, and a headless-Chromium look."""

from __future__ import annotations

import html as html_lib
import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from pipeline.build import BuildInputs, build
from pipeline.cli import app
from pipeline.config import load_config
from pipeline.report.data import collect
from storage import shards as sh
from tests.fakes import FakeArea, make_fake_area

SECRET = "hunter2-SECRET-VALUE"


@pytest.fixture(scope="module")
def built(ops_area: FakeArea, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small build, scored with known scores (the scorer's file layout), and a secret in run.json."""
    root = tmp_path_factory.mktemp("report")
    out = root / "out"
    # Imagery over only part of the area, so some rows fail (no_imagery) and the report lists why.
    part = make_fake_area(root / "part", seed=2, n_buildings=4, size_m=90.0)
    cfg = load_config(None, preset="tiny", max_objects=20)
    build(BuildInputs(osm=str(ops_area.osm), imagery=f"local:{part.imagery_dir}", out=str(out)), cfg,
          log=lambda _m: None)
    keys = [r["key"] for r in sh.read_rows(out / "shards").to_pylist() if r["status"] == "ok"]
    scores = np.random.default_rng(0).normal(0.25, 0.04, len(keys))
    (out / "scores").mkdir()
    pq.write_table(pa.table({"key": keys, "score_single": scores, "score_multi": scores - 0.01,
                             "model": ["ViT-test"] * len(keys)}), out / "scores" / "00000.parquet")
    run = json.loads((out / "run.json").read_text())
    run["inputs"]["imagery_api_key"] = SECRET
    run["inputs"]["mirror"] = f"https://user:{SECRET}@example.org/data"
    (out / "run.json").write_text(json.dumps(run))
    return out


@pytest.fixture(scope="module")
def report(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("html") / "report.html"
    res = CliRunner().invoke(app, ["report", str(built), "--out", str(target), "--examples", "8"])
    assert res.exit_code == 0, res.output
    return target


def test_report_data_matches_the_shards(built: Path) -> None:
    d = collect(built, n_examples=5)
    rows = sh.read_rows(built / "shards").to_pylist()
    ok = [r for r in rows if r["status"] == "ok"]
    assert d.n_ok == len(ok) > 0 and d.n_rows == len(rows)
    assert sum(d.collections.values()) == len(ok)
    assert len(d.examples) == 5 and all(e.jpeg[:2] == b"\xff\xd8" for e in d.examples)
    assert len({e.caption_single for e in d.examples}) == min(5, len({r["caption_single"] for r in ok}))
    cuts = d.cut_scores()
    assert d.scores is not None
    for pct, value in cuts.items():  # the global threshold keeps that top fraction
        assert abs((d.scores >= value).mean() - pct / 100) <= 1 / len(d.scores) + 1e-9
    assert d.tags_reaching(1) == len(d.tag_counts) >= d.tags_reaching(10)
    failed = Counter(r["error_code"] or "failed" for r in rows if r["status"] != "ok")
    assert d.failures == failed and sum(failed.values()) > 0


def test_report_is_self_contained_and_has_every_section(report: Path) -> None:
    text = report.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), "external resource in the page"
    for section in ("map", "tags", "examples", "similarity", "imagery", "failures", "config"):
        assert f"id='{section}'" in text
    assert text.count('class="fig"') == 4  # map, tag frequency, similarity histogram, GSD/collections
    assert text.count("data:image/jpeg;base64,") == 8
    assert "≥ 1,000 samples" in text
    assert SECRET not in text and SECRET not in html_lib.unescape(text)
    assert "prefect" in text  # versions table
    assert "no_imagery" in text and "No failed rows" not in text


def test_missing_run_json_is_one_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "run.json" in res.output and "Traceback" not in res.output


PROBE = """<script>window.addEventListener('load', function () {
  var r = [];
  document.querySelectorAll('img.fig, .card img').forEach(function (e) {
    var b = e.getBoundingClientRect();
    r.push([e.className || 'card', b.left + scrollX, b.top + scrollY, b.width, b.height]);
  });
  document.body.setAttribute('data-probe', JSON.stringify({sw: document.documentElement.scrollWidth,
    cw: document.documentElement.clientWidth, h: document.documentElement.scrollHeight, rects: r}));
});</script>"""
WIDTH = 1100


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    pytest.skip("headless Chromium not installed (Debian: apt-get install -y chromium)")


def _chrome(binary: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--virtual-time-budget=10000", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_report_in_headless_chromium_shows_map_histograms_examples(report: Path, tmp_path: Path) -> None:
    chromium = _chromium()
    probe_page = tmp_path / "probe.html"
    probe_page.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    dom = _chrome(chromium, f"--window-size={WIDTH},900", "--dump-dom", probe_page.as_uri())
    m = re.search(r'data-probe="([^"]*)"', dom.stdout)
    assert m, dom.stderr[-2000:]
    probe = json.loads(html_lib.unescape(m.group(1)))
    assert probe["sw"] <= probe["cw"], "the page scrolls sideways"
    shot = tmp_path / "shot.png"
    height = int(probe["h"]) + 10
    res = _chrome(chromium, f"--window-size={WIDTH},{height}", f"--screenshot={shot}", report.as_uri())
    assert shot.is_file(), res.stderr[-2000:]
    image = np.asarray(Image.open(shot).convert("L"), dtype=float)
    figs = [r for r in probe["rects"] if r[0] == "fig"]
    cards = [r for r in probe["rects"] if r[0] == "card"]
    assert len(figs) == 4 and len(cards) == 8
    for kind, x, y, w, h in figs + cards:
        assert w > 100 and h > 100, (kind, w, h)
        region = image[int(y) : int(y + h), int(x) : int(x + w)]
        assert region.size and region.std() > 4, f"{kind} region at y={y:.0f} looks blank"
        assert len(np.unique(region.round(-1))) >= 5, f"{kind} region at y={y:.0f} has almost one colour"
    blank_band = image[: int(figs[0][2]) - 5, :][:, :40]  # the left margin above the map: the page's background
    assert blank_band.std() < 3  # ...which shows the check above can tell blank from drawn
