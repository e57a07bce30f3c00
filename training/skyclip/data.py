"""The SkyCLIP training set: a selection's samples (minus the test split), as (image, tokens) pairs.

A map-style dataset over :class:`training.samples.SampleRef` (one seek + read per sample), so a
``DistributedSampler`` shards it exactly across ``torchrun`` processes. SkyScript's augmentation
— a random multiple of 90° rotation, since overhead imagery has no canonical "up" — runs before
open_clip's own training transform.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from pipeline.errors import BadInputError
from storage.scores import finished_shards
from storage.selection import check_selection_keys, read_selection
from storage.split import read_split
from training.samples import CAPTION_FIELDS, RefTable, SampleRef, decode_rgb, index_dataset, ok_keys, read_jpeg

log = logging.getLogger(__name__)


class RandomRot90:
    """Rotate a PIL image by 0, 90, 180 or 270 degrees, uniformly."""

    def __call__(self, img: Any) -> Any:
        k = random.randrange(4)
        return img if k == 0 else img.rotate(90 * k, expand=True)


class PairDataset(Dataset):
    def __init__(self, refs: list[SampleRef], caption: str, transform: Any, tokenizer: Any, rotate: bool) -> None:
        if caption not in CAPTION_FIELDS:
            raise BadInputError(f"--caption {caption!r}: use single or multi")
        self.refs = RefTable(refs)  # flat buffers: shared by forked loader workers, not copied
        self.caption = caption
        self.transform = transform
        self.tokenizer = tokenizer
        self.rotate = RandomRot90() if rotate else None
        self.bad: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        for step in range(len(self.refs)):  # a corrupt image gives way to the next sample, counted
            ref = self.refs[(i + step) % len(self.refs)]
            try:
                img = decode_rgb(read_jpeg(ref))
            except (OSError, ValueError, SyntaxError):
                self.bad[ref.key] += 1
                if self.bad[ref.key] == 1:
                    log.warning("skipping unreadable image %s (shard %05d)", ref.key, ref.shard)
                continue
            if self.rotate is not None:
                img = self.rotate(img)
            text = ref.caption(self.caption) or ref.caption_single
            return self.transform(img), self.tokenizer([text])[0]
        raise BadInputError("no readable image in the training set")


def training_refs(data: Path, selection: str, split: str = "train") -> tuple[list[SampleRef], dict[str, int]]:
    """The selection's samples, without test (and buffer) samples when a split was drawn."""
    data = Path(data)
    sel = read_selection(data, selection)
    keys = set(sel["key"].to_pylist())
    info = {"selected": len(keys)}
    sp = read_split(data)
    if sp is not None and split != "all":
        allowed = {k for k, s in zip(sp["key"].to_pylist(), sp["split"].to_pylist(), strict=True) if s == split}
        info["held_out"] = len(keys - allowed)
        keys &= allowed
    check_selection_keys(sel, ok_keys(data), selection)
    refs, skipped = index_dataset(data, finished_shards(data), keys)
    info.update({"usable": len(refs), **{f"skipped_{k}": v for k, v in skipped.items()}})
    if not refs:
        raise BadInputError(f"selection {selection!r} of {str(data)!r} leaves no training samples")
    return refs, info


def make_loader(
    ds: PairDataset, batch_size: int, workers: int, distributed: bool, seed: int, pin: bool
) -> tuple[DataLoader, Any]:
    """A DataLoader with open_clip's ``num_batches``/``num_samples`` attributes (train_one_epoch reads them)."""
    sampler: DistributedSampler | None = (
        DistributedSampler(ds, shuffle=True, seed=seed, drop_last=True) if distributed else None
    )
    if len(ds) < batch_size:
        raise BadInputError(
            f"{len(ds)} training samples per process is fewer than --batch-size {batch_size}; lower --batch-size"
        )
    g = torch.Generator()
    g.manual_seed(seed)
    loader = DataLoader(
        ds, batch_size=batch_size, shuffle=sampler is None, sampler=sampler, num_workers=workers,
        pin_memory=pin, drop_last=True, persistent_workers=workers > 0, generator=g,
    )
    loader.num_batches = len(loader)  # type: ignore[attr-defined]
    loader.num_samples = len(loader) * batch_size  # type: ignore[attr-defined]
    return loader, sampler
