"""``skyscript eval zeroshot``: zero-shot scene classification with prompt templates, top-1 accuracy.

``--dataset`` is a folder with one sub-folder of images per class, or the name of one of
torchgeo's scene-classification datasets (EuroSAT, UCMerced, RESISC45, PatternNet) already
downloaded under ``--root`` (nothing is downloaded here). Class names become text through the
templates below (mean of the normalised template embeddings, as in CLIP's zero-shot protocol).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.errors import BadInputError, InputFileError
from training.clip_models import ClipBundle, load_clip

TEMPLATES = (
    "a satellite image of {}.",
    "an aerial image of {}.",
    "a remote sensing image of {}.",
    "a satellite photo of a {}.",
    "an aerial photo of the {}.",
)
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"}
# torchgeo class name → (module attribute, constructor keywords)
TORCHGEO: dict[str, tuple[str, dict[str, Any]]] = {
    "eurosat": ("EuroSAT", {"split": "test", "bands": ("B04", "B03", "B02")}),
    "ucmerced": ("UCMerced", {"split": "test"}),
    "resisc45": ("RESISC45", {"split": "test"}),
    "patternnet": ("PatternNet", {}),
}


@dataclass(frozen=True)
class ZeroShotConfig:
    checkpoint: str
    dataset: str
    model: str | None = None
    root: str = "data"
    device: str = "auto"
    batch_size: int = 64
    workers: int = 2
    limit: int = 0  # evaluate at most this many images (0 = all)


def readable(name: str) -> str:
    """``AnnualCrop`` / ``storage_tanks`` / ``baseball-diamond`` → ``annual crop`` / ``storage tanks`` / ..."""
    name = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name)
    return re.sub(r"[_\-]+", " ", name).strip().lower()


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """torchgeo's float CHW tensor → HWC uint8 (reflectances stretched by their 2-98 % range)."""
    x = image.float().numpy()
    if x.shape[0] > 3:
        x = x[:3]
    if x.max() > 255 or x.max() <= 1.0:
        lo, hi = np.percentile(x, 2), np.percentile(x, 98)
        x = (x - lo) / max(hi - lo, 1e-6) * 255
    return np.clip(x, 0, 255).astype(np.uint8).transpose(1, 2, 0)


class _Folder(torch.utils.data.Dataset):
    def __init__(self, root: Path) -> None:
        self.classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        self.items = [(f, c) for c, name in enumerate(self.classes)
                      for f in sorted((root / name).iterdir()) if f.suffix.lower() in IMAGE_EXT]

    def __len__(self) -> int:
        return len(self.items)

    def image(self, i: int) -> tuple[Any, int]:
        from PIL import Image

        f, c = self.items[i]
        with Image.open(f) as im:
            return im.convert("RGB"), c


class _TorchGeo(torch.utils.data.Dataset):
    def __init__(self, ds: Any) -> None:
        self.ds = ds
        self.classes = list(ds.classes)

    def __len__(self) -> int:
        return len(self.ds)

    def image(self, i: int) -> tuple[Any, int]:
        from PIL import Image

        s = self.ds[i]
        return Image.fromarray(to_uint8(s["image"])), int(s["label"])


class _Preprocessed(torch.utils.data.Dataset):
    def __init__(self, base: Any, preprocess: Any, n: int) -> None:
        self.base, self.preprocess, self.n = base, preprocess, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img, label = self.base.image(i)
        return self.preprocess(img), label


def open_dataset(name: str, root: str) -> Any:
    p = Path(name)
    if p.is_dir():
        ds = _Folder(p)
        if len(ds.classes) < 2 or not len(ds):
            raise InputFileError(f"--dataset {name!r}: expected one sub-folder of images per class (at least two)")
        return ds
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    if key not in TORCHGEO:
        raise BadInputError(
            f"--dataset {name!r}: not a folder and not one of {', '.join(v[0] for v in TORCHGEO.values())}"
        )
    import torchgeo.datasets as tgd
    from torchgeo.datasets.errors import DatasetNotFoundError

    cls_name, kw = TORCHGEO[key]
    try:
        return _TorchGeo(getattr(tgd, cls_name)(root=root, download=False, **kw))
    except DatasetNotFoundError:
        raise InputFileError(
            f"{cls_name} not found under --root {root!r}; download it with torchgeo "
            f"({cls_name}(root=..., download=True)) or pass a folder-per-class directory"
        ) from None


def class_embeddings(bundle: ClipBundle, classes: list[str], templates: tuple[str, ...] = TEMPLATES) -> torch.Tensor:
    dev = bundle.device
    rows = []
    with torch.no_grad():
        for c in classes:
            t = F.normalize(bundle.model.encode_text(bundle.tokenizer([tp.format(readable(c)) for tp in templates])
                                                     .to(dev)).float(), dim=-1)
            rows.append(F.normalize(t.mean(0), dim=-1))
    return torch.stack(rows)


def evaluate_zeroshot(cfg: ZeroShotConfig, bundle: ClipBundle | None = None) -> dict[str, Any]:
    ds = open_dataset(cfg.dataset, cfg.root)
    bundle = bundle or load_clip(cfg.model, cfg.checkpoint, cfg.device)
    bundle.model.eval()
    n = len(ds) if not cfg.limit else min(cfg.limit, len(ds))
    classes = class_embeddings(bundle, ds.classes)
    loader = torch.utils.data.DataLoader(_Preprocessed(ds, bundle.preprocess_val, n), batch_size=cfg.batch_size,
                                         num_workers=cfg.workers)
    correct = total = 0
    per_class = np.zeros((len(ds.classes), 2), np.int64)
    with torch.no_grad():
        for images, labels in loader:
            img = F.normalize(bundle.model.encode_image(images.to(bundle.device)).float(), dim=-1)
            pred = (img @ classes.T).argmax(1).cpu()
            hit = pred == labels
            correct += int(hit.sum())
            total += len(labels)
            np.add.at(per_class, (labels.numpy(), 0), hit.numpy().astype(np.int64))
            np.add.at(per_class, (labels.numpy(), 1), 1)
    return {
        "task": "zeroshot", "model": bundle.model_id, "dataset": cfg.dataset, "images": total,
        "classes": len(ds.classes), "top1": correct / total if total else 0.0,
        "per_class_top1": {readable(c): (int(a) / int(b) if b else None) for c, (a, b) in zip(ds.classes, per_class,
                                                                                           strict=True)},
        "templates": list(TEMPLATES),
    }
