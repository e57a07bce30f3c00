"""The location encoder: spherical harmonics → SIREN, float64, named as in SatCLIP (``posenc``, ``nnet``).

Input is (N, 2) degrees as (lon, lat). Longitudes outside [−180, 180] are wrapped (the
harmonics are periodic in longitude anyway, so this only makes the stored inputs
canonical); latitudes beyond ±90 are rejected with :class:`BadInputError` — there is no
meaningful wrap for them, and a swapped (lat, lon) pair usually shows up this way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.errors import BadInputError
from training.satclip.sh import SphericalHarmonics
from training.satclip.siren import SirenNet


@dataclass(frozen=True)
class LocationConfig:
    legendre_polys: int = 10
    embed_dim: int = 256
    capacity: int = 512  # SIREN hidden width
    num_hidden_layers: int = 2
    sh_quirk: bool = False  # SatCLIP's released m = 0 scaling (see training.satclip.sh)

    def __post_init__(self) -> None:
        if not 1 <= self.legendre_polys <= 100:
            raise BadInputError(f"--legendre must be in 1..100 (SatCLIP: 10 or 40), got {self.legendre_polys}")


def check_lonlat(lonlat: torch.Tensor) -> torch.Tensor:
    """Validate and canonicalise (N, 2) degrees; returns float64."""
    if lonlat.ndim != 2 or lonlat.shape[1] != 2:
        raise BadInputError(f"locations must be an (N, 2) array of (lon, lat) degrees, got shape {tuple(lonlat.shape)}")
    lonlat = lonlat.to(torch.float64)
    if not torch.isfinite(lonlat).all():
        raise BadInputError("locations hold NaN or infinite values")
    lat = lonlat[:, 1]
    if (lat.abs() > 90).any():
        bad = lonlat[lat.abs() > 90][0].tolist()
        raise BadInputError(f"latitude beyond ±90° in (lon, lat) = {tuple(bad)}; pass (lon, lat), not (lat, lon)")
    lon = torch.remainder(lonlat[:, 0] + 180.0, 360.0) - 180.0
    return torch.stack([lon, lat], dim=1)


class LocationEncoder(nn.Module):
    def __init__(self, cfg: LocationConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.posenc = SphericalHarmonics(cfg.legendre_polys, quirk=cfg.sh_quirk)
        self.nnet = SirenNet(self.posenc.embedding_dim, cfg.capacity, cfg.embed_dim, cfg.num_hidden_layers).double()

    def forward(self, lonlat: torch.Tensor) -> torch.Tensor:
        x = check_lonlat(lonlat).to(self.nnet.last_layer.weight.device)
        return self.nnet(self.posenc(x))

    @torch.no_grad()
    def embed(self, lonlat: object, batch_size: int = 65536) -> torch.Tensor:
        """Embeddings of any (N, 2) array-like of (lon, lat) degrees, in eval mode, batched."""
        t = torch.as_tensor(lonlat, dtype=torch.float64)
        was = self.training
        self.eval()
        try:
            return torch.cat([self(t[i : i + batch_size]) for i in range(0, max(len(t), 1), batch_size)])
        finally:
            self.train(was)
