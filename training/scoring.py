"""``skyscript score``: CLIP cosine similarity of every image with its single- and multi-object caption.

Work is cut into units of at most ``batch_size`` samples of one shard. Worker processes (a torch
DataLoader over an IterableDataset, unit ``u`` on worker ``u % W``) read, decode, preprocess and
tokenise whole units while the model encodes earlier ones, so the model does not wait on JPEG
decoding. Repeated captions (most of a shard can be "building") are tokenised and encoded once per
unit. A shard's scores are published when its last unit is through, score file first and the done
marker last; a resumed run skips shards whose marker names the same model.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F

from pipeline.errors import BadInputError, InputFileError, OutputConflictError
from storage.atomic import publishing
from storage.scores import require_build, score_marker, shard_stem, write_scores
from training.clip_models import ClipBundle, load_clip
from training.samples import SampleRef, caption_rows, decode_rgb, index_tar, read_jpeg, tar_path


@dataclass(frozen=True)
class ScoreConfig:
    """One scoring run. ``batch_size=0``: 64 on CPU, probed from free memory on a GPU."""

    model: str = "ViT-L-14"
    pretrained: str = "openai"
    device: str = "auto"
    batch_size: int = 0
    workers: int = 4
    save_embeddings: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 0:
            raise BadInputError(f"--batch-size {self.batch_size}: give a positive number (or 0 for automatic)")
        if self.workers < 0:
            raise BadInputError(f"--workers {self.workers}: give 0 (decode in this process) or more")


@dataclass
class ScoreSummary:
    model: str
    shards_scored: int = 0
    shards_skipped: int = 0
    pairs: int = 0
    skipped_rows: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    batch_size: int = 0
    model_seconds: float = 0.0  # encoding (synchronised on a GPU): the rest is waiting for data or writing
    wait_seconds: float = 0.0  # blocked on the loader: > 0 means decoding did not keep up

    @property
    def model_busy(self) -> float:
        """Share of the scoring loop spent in the model (the GPU utilisation proxy)."""
        busy = self.model_seconds + self.wait_seconds
        return self.model_seconds / busy if busy else 0.0

    @property
    def pairs_per_second(self) -> float:
        return self.pairs / self.seconds if self.seconds else 0.0


@dataclass(frozen=True, slots=True)
class Unit:
    """Rows ``start:stop`` of a shard's captioned rows (see :func:`training.samples.caption_rows`)."""

    shard: int
    start: int
    stop: int


class _Units:
    """Picklable IterableDataset body: yields one preprocessed batch per unit (see module doc).

    Units name row ranges, not samples: the main process never holds a dataset's worth of
    sample records, and each worker indexes a shard (parquet rows + tar offsets) once, keeping
    only the shard it is on.
    """

    def __init__(self, out: Path, units: list[Unit], preprocess: Any, tokenizer: Any) -> None:
        self.out = out
        self.units = units
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self._shard: tuple[int, list[tuple[str, str, str]], dict[str, tuple[int, int]]] | None = None

    def _index(self, shard: int) -> tuple[list[tuple[str, str, str]], dict[str, tuple[int, int]]]:
        if self._shard is None or self._shard[0] != shard:
            rows, _ = caption_rows(self.out, shard)
            self._shard = (shard, rows, index_tar(tar_path(self.out, shard)))
        return self._shard[1], self._shard[2]

    def make(self, unit_id: int) -> dict[str, Any]:
        unit = self.units[unit_id]
        try:
            rows, offsets = self._index(unit.shard)
        except InputFileError as exc:  # raised in the main process as one line, not a worker traceback
            return {"shard": unit.shard, "fatal": str(exc)}
        tar = str(tar_path(self.out, unit.shard))
        images, keys, singles, multis, bad = [], [], [], [], []
        for key, single, multi in rows[unit.start : unit.stop]:
            where = offsets.get(key)
            if where is None:
                bad.append((key, "missing_image: no jpg member in the shard tar"))
                continue
            ref = SampleRef(key, unit.shard, tar, where[0], where[1], single, multi)
            try:
                images.append(self.preprocess(decode_rgb(read_jpeg(ref))))
            except (OSError, ValueError, SyntaxError) as exc:  # PIL's errors for corrupt/truncated JPEGs
                bad.append((key, f"corrupt_image: {str(exc)[:120]}"))
                continue
            keys.append(key)
            singles.append(single)
            multis.append(multi)
        texts = list(dict.fromkeys([*singles, *(m for m in multis if m)]))
        pos = {t: i for i, t in enumerate(texts)}
        return {
            "shard": unit.shard,
            "keys": keys,
            "bad": bad,
            "images": torch.stack(images) if images else None,
            "tokens": self.tokenizer(texts) if texts else None,
            "single_idx": torch.tensor([pos[t] for t in singles], dtype=torch.long),
            "multi_idx": torch.tensor([pos[m] if m else -1 for m in multis], dtype=torch.long),
        }


class UnitStream(torch.utils.data.IterableDataset):
    """Unit ``u`` is made by worker ``u % W``: the loader's round-robin then returns units in order."""

    def __init__(self, units: _Units) -> None:
        self.units = units

    def __iter__(self) -> Any:
        info = torch.utils.data.get_worker_info()
        wid, n = (0, 1) if info is None else (info.id, info.num_workers)
        for u in range(wid, len(self.units.units), n):
            yield self.units.make(u)


def largest_fitting_batch(fits: Callable[[int], bool], start: int = 1024, floor: int = 8) -> int:
    """Halve from ``start`` until ``fits(b)``; return half of that for headroom (≥ ``floor``).

    Headroom: the probe runs one batch on an idle device, while the real run also holds the
    pinned prefetch queue and the previous batch's outputs.
    """
    b = start
    while b > floor:
        if fits(b):
            return max(floor, b // 2)
        b //= 2
    return floor


def _auto_batch_size(bundle: ClipBundle, start: int = 1024) -> int:
    """64 on CPU; on a GPU the largest power of two whose fp16 forward pass fits in free memory."""
    if bundle.device.type != "cuda":
        return 64
    size = bundle.model.visual.image_size
    h, w = (size, size) if isinstance(size, int) else size
    ctx = bundle.tokenizer(["probe"]).shape[1]

    def fits(b: int) -> bool:
        try:
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
                bundle.model.encode_image(torch.zeros(b, 3, h, w, device=bundle.device))
                bundle.model.encode_text(torch.zeros(b, ctx, dtype=torch.long, device=bundle.device))
            torch.cuda.synchronize(bundle.device)
            return True
        except torch.cuda.OutOfMemoryError:
            return False
        finally:
            torch.cuda.empty_cache()

    return largest_fitting_batch(fits, start)


def encode_unit(bundle: ClipBundle, batch: dict[str, Any]) -> dict[str, np.ndarray]:
    """Normalised embeddings and cosine scores of one unit (rows = ``batch['keys']``)."""

    dev = bundle.device
    amp = torch.autocast("cuda", dtype=torch.float16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)
    with torch.no_grad(), amp:
        img = F.normalize(bundle.model.encode_image(batch["images"].to(dev, non_blocking=True)).float(), dim=-1)
        txt = F.normalize(bundle.model.encode_text(batch["tokens"].to(dev, non_blocking=True)).float(), dim=-1)
    img_np, txt_np = img.cpu().numpy(), txt.cpu().numpy()
    s_idx, m_idx = batch["single_idx"].numpy(), batch["multi_idx"].numpy()
    t_single = txt_np[s_idx]
    t_multi = np.where((m_idx >= 0)[:, None], txt_np[np.maximum(m_idx, 0)], np.nan).astype(np.float32)
    return {
        "image": img_np,
        "text_single": t_single,
        "text_multi": t_multi,
        "score_single": np.einsum("ij,ij->i", img_np, t_single),
        "score_multi": np.einsum("ij,ij->i", img_np, t_multi),  # NaN where there is no multi caption
    }


def _publish_shard(out: Path, shard: int, model_id: str, parts: list[dict[str, Any]], skipped: Counter[str],
                   t0: float, save_embeddings: bool) -> int:
    keys = [k for p in parts for k in p["keys"]]
    cat = {n: np.concatenate([p[n] for p in parts]) if parts else np.zeros((0,), np.float32)
           for n in ("score_single", "score_multi")}
    table = pa.table({
        "key": pa.array(keys, pa.string()),
        "score_single": pa.array(cat["score_single"].astype(np.float32)),
        "score_multi": pa.array(cat["score_multi"].astype(np.float32)),
        "model": pa.array([model_id] * len(keys), pa.string()),
    })
    if save_embeddings and parts:
        emb_path = out / "embeddings" / f"{shard_stem(shard)}.npz"
        with publishing(emb_path) as tmp, open(tmp, "wb") as f:
            arrays: dict[str, Any] = {n: np.concatenate([p[n] for p in parts]).astype(np.float16)
                                      for n in ("image", "text_single", "text_multi")}
            np.savez(f, key=np.array(keys), **arrays)
    stats = {
        "shard": shard, "model": model_id, "scored": len(keys), "skipped": sum(skipped.values()),
        "errors": dict(sorted(skipped.items())), "embeddings": bool(save_embeddings),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    write_scores(out, shard, table, stats)
    return len(keys)


def _pending(out: Path, shards: list[int], mid: str, cfg: ScoreConfig) -> tuple[list[int], int]:
    todo, done = [], 0
    for s in shards:
        m = score_marker(out, s)
        if m is None or cfg.overwrite:
            todo.append(s)
        elif m.get("model") != mid:
            raise OutputConflictError(
                f"shard {shard_stem(s)} of {str(out)!r} is already scored with {m.get('model')}, not {mid}; "
                "pass --overwrite to replace those scores"
            )
        elif cfg.save_embeddings and not m.get("embeddings"):
            todo.append(s)
        else:
            done += 1
    return todo, done


def score_dataset(out: Path, cfg: ScoreConfig, bundle: ClipBundle | None = None, progress: bool = True) -> ScoreSummary:
    """Score every finished, not-yet-scored shard of ``out``; see the module docstring."""

    out = Path(out)
    shards = require_build(out)
    bundle = bundle or load_clip(cfg.model, cfg.pretrained, cfg.device)
    bundle.model.eval()
    todo, done = _pending(out, shards, bundle.model_id, cfg)
    bs = cfg.batch_size or _auto_batch_size(bundle)
    summary = ScoreSummary(bundle.model_id, shards_skipped=done, batch_size=bs)
    t_start = time.perf_counter()

    units: list[Unit] = []
    unit_count: Counter[int] = Counter()
    skipped: dict[int, Counter[str]] = defaultdict(Counter)
    empty: list[int] = []
    total = 0
    for s in todo:
        rows, sk = caption_rows(out, s)
        skipped[s].update(sk)
        total += len(rows)
        if not rows:
            empty.append(s)
        for i in range(0, len(rows), bs):
            units.append(Unit(s, i, min(i + bs, len(rows))))
            unit_count[s] += 1
    for s in empty:  # nothing usable: publish an empty score file so the shard counts as scored
        summary.shards_scored += 1
        _publish_shard(out, s, bundle.model_id, [], skipped[s], t_start, cfg.save_embeddings)
    summary.skipped_rows.update(c for s in skipped for c in skipped[s].elements())

    loader = torch.utils.data.DataLoader(
        UnitStream(_Units(out, units, bundle.preprocess_val, bundle.tokenizer)),
        batch_size=None,
        num_workers=min(cfg.workers, len(units)),
        pin_memory=bundle.device.type == "cuda",
        prefetch_factor=4 if cfg.workers and units else None,
        # Workers start from a clean server process, not a fork of this one: forking a process that
        # runs threads (a Prefect flow, a Dask client, GDAL) can leave a worker dead on arrival.
        multiprocessing_context="forkserver" if cfg.workers and units else None,
    )
    parts: dict[int, list[dict[str, Any]]] = defaultdict(list)
    seen: Counter[int] = Counter()
    t_shard: dict[int, float] = {}
    from pipeline.progress import progress_bar

    with progress_bar(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"scoring with {bundle.model_id}", total=total)
        it = iter(loader)
        while True:
            t_wait = time.perf_counter()
            batch = next(it, None)
            summary.wait_seconds += time.perf_counter() - t_wait
            if batch is None:
                break
            s = int(batch["shard"])
            if "fatal" in batch:
                raise InputFileError(batch["fatal"])
            t_shard.setdefault(s, time.perf_counter())
            for _key, why in batch["bad"]:
                skipped[s][why.split(":", 1)[0]] += 1
                summary.skipped_rows[why.split(":", 1)[0]] += 1
            if batch["keys"]:
                t_model = time.perf_counter()
                res = encode_unit(bundle, batch)  # .cpu() inside synchronises a GPU
                summary.model_seconds += time.perf_counter() - t_model
                parts[s].append({"keys": batch["keys"], **res})
            seen[s] += 1
            bar.advance(task, len(batch["keys"]) + len(batch["bad"]))
            if seen[s] == unit_count[s]:
                summary.pairs += _publish_shard(
                    out, s, bundle.model_id, parts.pop(s), skipped[s], t_shard[s], cfg.save_embeddings
                )
                summary.shards_scored += 1
    summary.seconds = time.perf_counter() - t_start
    return summary
