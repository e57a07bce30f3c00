"""Photos fetched from URLs (loopback: good, dead, flaky), and the build-graft Prefect flow."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.graft.fetch import PhotoFetcher
from pipeline.graft.writer import read_rows
from pipeline.retry import RetryPolicy
from tests.graft.synth import marked_raster, photo_points

ROOT = Path(__file__).resolve().parents[2]


def _jpeg(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 120, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


class _Photos(BaseHTTPRequestHandler):
    flaky: ClassVar[dict[str, int]] = {}

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/dead"):
            self.send_response(404)
            self.end_headers()
            return
        if self.path.startswith("/flaky") and self.flaky.get(self.path, 0) < 1:
            self.flaky[self.path] = self.flaky.get(self.path, 0) + 1
            self.send_response(503)
            self.end_headers()
            return
        body = b"not an image" if self.path.startswith("/junk") else _jpeg(640, 480)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def photo_server() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Photos)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_fetcher_outcomes(photo_server: str, tmp_path: Path) -> None:
    f = PhotoFetcher(policy=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02))
    ok = f.get(None, f"{photo_server}/ok/1.jpg")
    assert ok.jpeg is not None and ok.size == (341, 256)
    assert f.get(None, f"{photo_server}/flaky/1.jpg").jpeg is not None  # 503 once, then served
    assert f.get(None, f"{photo_server}/dead/1.jpg").error_code == "dead_url"
    assert f.get(None, f"{photo_server}/junk/1.jpg").error_code == "bad_image"
    assert f.get(str(tmp_path / "nope.jpg"), None).error_code == "missing_file"
    assert f.get(None, None).error_code == "no_pixels"
    # A missing file with a URL falls back to the URL.
    assert f.get(str(tmp_path / "nope.jpg"), f"{photo_server}/ok/2.jpg").jpeg is not None


def test_build_fetches_urls(photo_server: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    lons, lats = photo_points(12, 3, spread_m=20)  # one or two tiles
    raster = marked_raster(tmp_path / "img", lons, lats)
    kinds = ["ok", "dead", "ok", "flaky", "junk", "ok"] * 2
    pd.DataFrame({"id": [f"u{i}" for i in range(12)], "lat": lats, "lon": lons,
                  "taken": [1_620_000_000_000 + i for i in range(12)],
                  "url": [f"{photo_server}/{k}/{i}.jpg" for i, k in enumerate(kinds)]}).to_csv(tmp_path / "t.csv")
    res = CliRunner().invoke(app, ["build-graft", "--photos", str(tmp_path / "t.csv"), "--imagery",
                                   f"local:{raster.parent}", "--out", str(tmp_path / "o"), "--tile-px", "64"])
    assert res.exit_code == 0, res.output
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert run["summary"]["photo_errors"] == {"dead_url": 2, "bad_image": 2}
    assert run["summary"]["photos_written"] == 8
    rows = read_rows(tmp_path / "o" / "shards").to_pylist()
    assert all(r["status"] == "ok" for r in rows) and sum(r["n_photos_ok"] for r in rows) == 8


@pytest.mark.slow
def test_build_graft_prefect_flow(tmp_path: Path) -> None:
    lons, lats = photo_points(20, 4)
    raster = marked_raster(tmp_path / "img", lons, lats)
    pd.DataFrame({"id": [f"p{i}" for i in range(20)], "lat": lats, "lon": lons}).to_csv(tmp_path / "t.csv")
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect_home"), PYTHONPATH=str(ROOT),
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="300", PREFECT_API_REQUEST_TIMEOUT="120")
    cmd = [sys.executable, "-m", "pipeline.cli", "build-graft", "--photos", str(tmp_path / "t.csv"), "--imagery",
           f"local:{raster.parent}", "--out", str(tmp_path / "o"), "--tile-px", "64", "--metadata-only",
           "--shard-size", "4", "--prefect"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=280)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "build-graft" in res.stderr + res.stdout
    rows = read_rows(tmp_path / "o" / "shards").to_pylist()
    assert rows and all(r["status"] == "ok" for r in rows)
