"""Shared test set-up: offline environment, blocked network, the optional real-data folder."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

# Property tests draw the same examples on every run (here and in CI), so a clean clone never fails
# on an example nobody has seen; HYPOTHESIS_PROFILE=explore draws new ones to hunt for bugs.
hypothesis_settings.register_profile("deterministic", derandomize=True)
hypothesis_settings.register_profile("explore", derandomize=False)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

for _k, _v in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "NO_GCE_CHECK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    # Prefect's ephemeral server can take minutes to start on a busy 2-core CI machine (issue 10).
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
}.items():
    os.environ.setdefault(_k, _v)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SKYSCRIPT_SHARED_DATA", ROOT.parent / "shared" / "data"))

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(address: object) -> bool:
    if isinstance(address, tuple) and address:
        host = str(address[0])
        return host in ("localhost", "::1") or host.startswith("127.")
    return True  # AF_UNIX paths and the like


def _guarded_connect(self: socket.socket, address: object) -> None:
    if not _is_loopback(address):
        raise OSError(f"network access is blocked in tests (tried {address!r}); use a loopback fixture")
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if not _is_loopback(address):
        raise OSError(f"network access is blocked in tests (tried {address!r}); use a loopback fixture")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def _block_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("live"):
        return
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests using it skip with a reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not present at {SHARED_DATA} (set SKYSCRIPT_SHARED_DATA)")
    return SHARED_DATA


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("-m"):
        return
    skip_live = pytest.mark.skip(reason="live-service test; run with -m live")
    for item in items:
        if "live" in item.keywords:
            item.add_marker(skip_live)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny random open_clip architecture, registered once per session (its name)."""
    from tests.scoring.shardmaker import register_tiny

    return register_tiny(tmp_path_factory.mktemp("clip_cfg"))


@pytest.fixture(scope="session")
def tiny_ckpt(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights of the tiny model saved as a plain checkpoint (what real weights load like)."""
    from tests.scoring.shardmaker import save_tiny_checkpoint

    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")
