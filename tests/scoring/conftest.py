"""Fixtures: the tiny random open_clip model (registered once) and its saved checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scoring.shardmaker import register_tiny, save_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return register_tiny(tmp_path_factory.mktemp("clip_cfg"))


@pytest.fixture(scope="session")
def tiny_ckpt(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")
