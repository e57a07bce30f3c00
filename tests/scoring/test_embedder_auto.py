"""tag_classifier.embedder: auto — CLIP ViT-L/14 when its weights are cached (or downloadable), MiniLM otherwise."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tag_classifier.embedders import make_embedder, resolve_auto


def _fake_hf_cache(root: Path) -> Path:
    """The HF hub cache layout open_clip's ViT-L-14/openai weights would have after a download."""
    repo = root / "models--timm--vit_large_patch14_clip_224.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    snap = repo / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (snap / "open_clip_model.safetensors").write_bytes(b"weights")
    return root


def test_auto_picks_clip_when_weights_are_cached(tmp_path: Path) -> None:
    d = resolve_auto(allow_download=False, hf_cache_dir=str(_fake_hf_cache(tmp_path / "hub")))
    assert d.name == "clip" and "cached" in d.reason and "open_clip_model.safetensors" in d.reason


def test_auto_falls_back_to_minilm_offline_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.cache/clip/ViT-L-14.pt either
    d = resolve_auto(allow_download=False, hf_cache_dir=str(tmp_path / "empty"))
    assert d.name == "minilm" and "not cached" in d.reason
    t0 = time.perf_counter()
    d = resolve_auto(allow_download=True, hf_cache_dir=str(tmp_path / "empty"))  # the network is blocked here
    assert d.name == "minilm" and "not downloadable" in d.reason
    assert time.perf_counter() - t0 < 60


def test_make_embedder_auto_announces_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tag_classifier.embedders as emb

    monkeypatch.setattr(emb, "resolve_auto", lambda: emb.AutoDecision("minilm", "minilm: test says so"))
    said: list[str] = []
    e = make_embedder("auto", tmp_path / "c.sqlite", say=said.append)
    assert e.id == "sentence-transformers/all-MiniLM-L6-v2"
    assert said == ["tag embedder auto -> minilm: test says so"]


def test_no_environment_mutation_in_the_embedders_module() -> None:
    src = Path(emb_path := __import__("tag_classifier.embedders").embedders.__file__).read_text()
    assert "os.environ.setdefault" not in src and "os.environ[" not in src, emb_path
