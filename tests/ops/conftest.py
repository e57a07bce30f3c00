"""Operations fixtures: one Prefect server per test session, a fake area, child-process env.

The server runs on loopback with SQLite under a temporary ``PREFECT_HOME``; its start-up gets a
generous timeout because a busy 2-core CI machine can take a minute to bring it up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.fakes import FakeArea, make_fake_area

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SERVER_START_TIMEOUT_S = float(os.environ.get("SKYSCRIPT_TEST_PREFECT_START_S", "300"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(home: Path, **extra: str) -> dict[str, str]:
    """Environment for child processes: offline, the repo importable, Prefect under ``home``."""
    env = dict(os.environ)
    env.update(
        PREFECT_HOME=str(home),
        PYTHONPATH=str(ROOT),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        HF_HUB_OFFLINE="1",
        NO_GCE_CHECK="true",
        # Belt and braces for anything that still starts an ephemeral server.
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="300",
        PREFECT_API_REQUEST_TIMEOUT="120",
    )
    env.update(extra)
    return env


def stop(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """End a child we started (its whole process group) and reap it."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace_s)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace_s)


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"process serving {url} exited with {proc.returncode}: {tail}")
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s")


class PrefectServer:
    def __init__(self, home: Path, api_url: str, proc: subprocess.Popen) -> None:
        self.home = home
        self.api_url = api_url
        self.proc = proc

    def env(self, **extra: str) -> dict[str, str]:
        return child_env(self.home, PREFECT_API_URL=self.api_url, **extra)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    home = tmp_path_factory.mktemp("prefect_home")
    port = free_port()
    log = home / "server.log"
    env = child_env(
        home,
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        PREFECT_UI_ENABLED="false",
    )
    env.pop("PREFECT_API_URL", None)
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
            env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, cwd=home,
        )
    api = f"http://127.0.0.1:{port}/api"
    try:
        wait_http(api + "/health", SERVER_START_TIMEOUT_S, proc, log)
        yield PrefectServer(home, api, proc)
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def ops_area(tmp_path_factory: pytest.TempPathFactory) -> FakeArea:
    return make_fake_area(tmp_path_factory.mktemp("ops_area"), seed=11, n_buildings=30)
