"""Embedders and the on-disk embedding cache."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import BadInputError
from tag_classifier.embedders import (
    CachedEmbedder,
    EmbeddingCache,
    MiniLMEmbedder,
    OpenClipEmbedder,
    TextEmbedder,
    make_embedder,
)


class _CountingEmbedder:
    """Deterministic stand-in that records which texts it was asked to embed."""

    def __init__(self, name: str = "count") -> None:
        self.name = name
        self.seen: list[str] = []

    @property
    def id(self) -> str:
        return self.name

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.seen += list(texts)
        v = np.array([[len(t), sum(map(ord, t)) % 97, 1.0] for t in texts], dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_cache_is_keyed_by_model_and_text(cache_path: Path) -> None:
    c = EmbeddingCache(cache_path)
    c.put("m1", ["a", "b"], np.eye(2, dtype=np.float32))
    c.put("m2", ["a"], np.array([[0.5, 0.5, 0.5]], dtype=np.float32))
    got = c.get("m1", ["a", "b", "zzz"])
    assert set(got) == {"a", "b"} and np.array_equal(got["b"], [0.0, 1.0])
    assert c.get("m2", ["a"])["a"].shape == (3,)
    assert c.count() == 3 and c.count("m1") == 2
    assert EmbeddingCache(cache_path).count("m2") == 1  # persisted on disk


def test_cached_embedder_embeds_only_new_texts(cache_path: Path) -> None:
    inner = _CountingEmbedder()
    e = CachedEmbedder(inner, EmbeddingCache(cache_path))
    first = e.embed(["building house", "name", "building house"])
    assert inner.seen == ["building house", "name"]
    second = CachedEmbedder(_CountingEmbedder(), EmbeddingCache(cache_path)).embed(["name", "building house"])
    assert np.allclose(second, first[[1, 0]])
    e.embed(["new text", "name"])
    assert inner.seen[-1:] == ["new text"] and e.computed == 3
    assert isinstance(e, TextEmbedder)


def test_huge_and_non_latin_texts_are_handled(cache_path: Path) -> None:
    inner = _CountingEmbedder()
    e = CachedEmbedder(inner, EmbeddingCache(cache_path))
    out = e.embed(["x" * 100_000, "名前 赫尔辛基", ""])
    assert out.shape == (3, 3) and max(len(t) for t in inner.seen) <= 200


@pytest.mark.parametrize("name", ["bert", "open_clip:", "open_clip::openai", ""])
def test_unknown_embedder_names_are_rejected(name: str, cache_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"embedder|model"):
        make_embedder(name, cache_path)


def test_embedder_ids_name_the_weights(tmp_path: Path) -> None:
    assert make_embedder("clip", tmp_path / "c.sqlite").id == "open_clip:ViT-L-14:openai"
    assert make_embedder("open_clip:ViT-B-32:laion2b_s34b_b79k", tmp_path / "c.sqlite").id.endswith("laion2b_s34b_b79k")
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(b"x")
    assert "file-ckpt.pt" in OpenClipEmbedder("ViT-B-32", str(ckpt)).id
    assert MiniLMEmbedder().id == "sentence-transformers/all-MiniLM-L6-v2"


def test_tiny_open_clip_text_tower(tiny_clip: str, cache_path: Path) -> None:
    e = make_embedder(tiny_clip, cache_path)
    v = e.embed(["building house", "name", "landuse farmland"])
    assert v.shape == (3, 32) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    again = OpenClipEmbedder("tiny-tag-test", None).embed(["building house"])  # fresh instance, same seed
    assert np.allclose(again[0], v[0], atol=1e-5)
    assert e.id == "open_clip:tiny-tag-test:random-seed0"


def test_unknown_open_clip_model(tiny_clip: str) -> None:
    with pytest.raises(BadInputError, match="unknown open_clip model"):
        OpenClipEmbedder("no-such-model", None).embed(["x"])


@pytest.mark.slow
def test_offline_minilm_embeds_meaningfully(minilm_cache: Path) -> None:
    e = make_embedder("minilm", minilm_cache)
    v = e.embed(["building house", "building residential", "phone number"])
    assert v.shape == (3, 384) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-4)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])


def test_open_clip_local_checkpoint(tiny_clip: str, tmp_path: Path) -> None:
    """A local checkpoint file loads offline and gives its own (content-derived) id."""
    import open_clip
    import torch

    torch.manual_seed(123)
    model = open_clip.create_model("tiny-tag-test", pretrained=None)
    ckpt = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), ckpt)
    e = make_embedder(f"open_clip:tiny-tag-test:{ckpt}", tmp_path / "c.sqlite")
    assert e.id.startswith("open_clip:tiny-tag-test:file-tiny.pt-")
    got = e.embed(["building house"])
    tok = open_clip.get_tokenizer("tiny-tag-test")
    with torch.no_grad():
        want = model.encode_text(tok(["building house"])).numpy()
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    assert np.allclose(got, want, atol=1e-5)
    assert not np.allclose(got, OpenClipEmbedder("tiny-tag-test", None).embed(["building house"]), atol=1e-3)
