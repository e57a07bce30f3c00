"""`skyscript serve` + `prefect deployment run build-skyscript/default ... --watch` against a real server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from storage import shards as sh
from tests.fakes import FakeArea
from tests.ops.conftest import BIN, ROOT, PrefectServer, stop

SKYSCRIPT = [sys.executable, "-m", "pipeline.cli"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # a loaded CI machine starts servers slowly


def _deployment_ready(api: str, name: str) -> bool:
    try:
        return requests.get(f"{api}/deployments/name/{name}", timeout=5).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def served(prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    import time

    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([*SKYSCRIPT, "serve"], env=prefect_server.env(), stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 240
        while not _deployment_ready(prefect_server.api_url, "build-skyscript/default"):
            assert proc.poll() is None, f"skyscript serve exited: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no deployment after 240 s: {log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield prefect_server
    finally:
        stop(proc)


def _run(server: PrefectServer, *params: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(BIN / "prefect"), "deployment", "run", "build-skyscript/default"]
    for p in params:
        cmd += ["-p", p]
    return subprocess.run([*cmd, "--watch"], env=server.env(), capture_output=True, text=True, timeout=480,
                          cwd=ROOT)


def _run_id(text: str) -> str:
    m = re.search(r"UUID: ([0-9a-f-]{36})", text)
    assert m, text[-2000:]
    return m.group(1)


def _state(server: PrefectServer, text: str) -> str:
    run = requests.get(f"{server.api_url}/flow_runs/{_run_id(text)}", timeout=30).json()
    return str(run["state"]["type"])


def _logs(server: PrefectServer, text: str) -> str:
    body = {"logs": {"flow_run_id": {"any_": [_run_id(text)]}}, "limit": 200}
    logs = requests.post(f"{server.api_url}/logs/filter", json=body, timeout=30).json()
    return "\n".join(entry["message"] for entry in logs)


def test_deployment_run_builds_to_completed(served: PrefectServer, ops_area: FakeArea, tmp_path: Path) -> None:
    out = tmp_path / "built"
    res = _run(served, f"osm={ops_area.osm}", f"imagery=local:{ops_area.imagery_dir}", f"out={out}",
               "max_objects=60", "preset=tiny")
    text = res.stdout + res.stderr
    assert res.returncode == 0, text[-4000:]
    assert _state(served, text) == "COMPLETED"
    run = json.loads((out / "run.json").read_text())
    rows = sh.read_rows(out / "shards")
    assert run["summary"]["finished"] and len(rows) == run["n_planned"] > 0
    assert len(sh.done_shards(out / "shards")) == run["n_shards"]
    assert run["summary"]["written"] == sum(1 for _ in sh.iter_samples(out / "shards")) > 0


def test_bad_parameter_fails_the_run_naming_it(served: PrefectServer, ops_area: FakeArea, tmp_path: Path) -> None:
    res = _run(served, f"osm={ops_area.osm}", f"imagery=local:{ops_area.imagery_dir}", f"out={tmp_path / 'o'}",
               "max_objects=-3")
    text = res.stdout + res.stderr
    assert res.returncode != 0
    assert _state(served, text) == "FAILED"
    assert "max_objects" in _logs(served, text)
    assert not (tmp_path / "o").exists()  # validation ran before any work


def test_serve_registers_every_flow(served: PrefectServer) -> None:
    for name in ("build-skyscript", "score-skyscript", "train-skyclip", "train-tag-classifier"):
        assert _deployment_ready(served.api_url, f"{name}/default"), name


def test_serve_without_a_server_is_one_line(tmp_path: Path) -> None:
    from tests.ops.conftest import child_env, free_port

    env = child_env(tmp_path / "home", PREFECT_API_URL=f"http://127.0.0.1:{free_port()}/api")
    res = subprocess.run([*SKYSCRIPT, "serve"], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "unreachable" in res.stderr and "Traceback" not in res.stderr
