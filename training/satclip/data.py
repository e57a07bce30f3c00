"""S2-100K-layout data (``index.csv`` with ``fn, lon, lat`` + ``images/``) as a torch Dataset.

Preprocessing follows SatCLIP: reflectances / 10 000, a zero B10 inserted for the
13-band MoCo backbones, random flips, and a coordinate jitter of up to 0.01° (~1 km).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import rasterio
import torch
from torch.utils.data import Dataset

from pipeline.errors import BadInputError, InputFileError


class S2Patches(Dataset):
    def __init__(
        self, root: str | Path, channels: int = 12, augment: bool = True, jitter: float = 0.01, seed: int = 0
    ) -> None:
        self.root = Path(root)
        index = self.root / "index.csv"
        if not index.is_file():
            raise InputFileError(
                f"{index} not found: --data must be a folder with index.csv and images/ "
                "(e.g. made by `skyscript satclip sample`)"
            )
        with open(index, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"fn", "lon", "lat"} - set(reader.fieldnames or [])
            if missing:
                raise InputFileError(f"{index} lacks column(s) {sorted(missing)}; S2-100K's index has fn, lon, lat")
            rows = list(reader)
        if not rows:
            raise InputFileError(f"{index} lists no patches")
        self.files = [self.root / "images" / r["fn"] for r in rows]
        self.points = np.array([[float(r["lon"]), float(r["lat"])] for r in rows], dtype=np.float64)
        if (np.abs(self.points[:, 1]) > 90).any():
            raise BadInputError(f"{index} has latitudes beyond ±90° (are lon and lat swapped?)")
        self.channels, self.augment, self.jitter, self.seed = channels, augment, jitter, seed
        self._rngs: dict[int, np.random.Generator] = {}

    def _rng(self) -> np.random.Generator:
        """One generator per DataLoader worker (seeded by torch per worker and epoch), else one here."""
        info = torch.utils.data.get_worker_info()
        key = -1 if info is None else info.id
        if key not in self._rngs:
            self._rngs[key] = np.random.default_rng(self.seed if info is None else info.seed)
        return self._rngs[key]

    def __len__(self) -> int:
        return len(self.files)

    def read(self, i: int) -> np.ndarray:
        path = self.files[i]
        try:
            with rasterio.open(path) as ds:
                pixels = ds.read().astype(np.float32)
        except rasterio.errors.RasterioIOError as exc:
            raise InputFileError(f"cannot read patch {path}: {exc}") from exc
        if pixels.shape[0] != 12:
            raise InputFileError(f"patch {path} has {pixels.shape[0]} bands; S2-100K patches have 12 (B01..B12)")
        return pixels

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        img = self.read(i) / 10000.0
        if self.channels == 13:
            img = np.concatenate([img[:10], np.zeros_like(img[:1]), img[10:]], axis=0)
        point = self.points[i].copy()
        if self.augment:
            rng = self._rng()
            if rng.random() < 0.5:
                img = img[:, :, ::-1]
            if rng.random() < 0.5:
                img = img[:, ::-1, :]
            point = point + rng.random(2) * self.jitter
            point[1] = np.clip(point[1], -90.0, 90.0)
        return {"image": torch.from_numpy(np.ascontiguousarray(img)), "point": torch.from_numpy(point)}
