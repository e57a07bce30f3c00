"""Real spherical harmonics of (lon, lat), SatCLIP's location features, in float64.

Convention (the released models'): φ = lon + 180°, θ = lat + 90° (so cos θ = −sin lat),
features ordered l = 0..L−1, m = −l..l (L² in all), real harmonics without the
Condon–Shortley phase: √2·N·P_l^|m|(cos θ)·sin(|m|φ) for m < 0, √2·N·P_l^m·cos(mφ) for m > 0.

The quirk: SatCLIP's generated analytic expressions write the m = 0 normaliser as
√((2l+1)/4·π) instead of √((2l+1)/(4π)), so its m = 0 features are π times the
orthonormal ones. Every released checkpoint was trained that way; ``quirk=True``
reproduces it (needed for their weights to give their embeddings), ``quirk=False`` gives
the orthonormal basis. Computed with the three-term Legendre recurrence (no per-(l, m)
generated code), which matches the analytic forms to float64 rounding.
"""

from __future__ import annotations

import math

import torch
from torch import nn

M0_QUIRK_FACTOR = math.pi


def _norm(deg: int, m: int) -> float:
    return math.exp(
        0.5 * (math.log(2 * deg + 1) - math.log(4 * math.pi) + math.lgamma(deg - m + 1) - math.lgamma(deg + m + 1))
    )


def spherical_harmonics(lonlat: torch.Tensor, legendre_polys: int, quirk: bool = False) -> torch.Tensor:
    """(N, 2) degrees (lon, lat) → (N, L²) float64 features."""
    lonlat = lonlat.to(torch.float64)
    phi = torch.deg2rad(lonlat[:, 0] + 180.0)
    theta = torch.deg2rad(lonlat[:, 1] + 90.0)
    x = torch.cos(theta)
    s = torch.sqrt(torch.clamp((1.0 - x) * (1.0 + x), min=0.0))
    big_l = int(legendre_polys)
    # P[l][m] for 0 <= m <= l < L, no Condon–Shortley phase.
    p: dict[tuple[int, int], torch.Tensor] = {}
    pmm = torch.ones_like(x)
    for m in range(big_l):
        if m > 0:
            pmm = pmm * (2 * m - 1) * s
        p[(m, m)] = pmm
        if m + 1 < big_l:
            p[(m + 1, m)] = x * (2 * m + 1) * pmm
        for deg in range(m + 2, big_l):
            p[(deg, m)] = ((2 * deg - 1) * x * p[(deg - 1, m)] - (deg + m - 1) * p[(deg - 2, m)]) / (deg - m)
    cos_m = [torch.cos(m * phi) for m in range(big_l)]
    sin_m = [torch.sin(m * phi) for m in range(big_l)]
    feats = []
    root2 = math.sqrt(2.0)
    for deg in range(big_l):
        for m in range(-deg, deg + 1):
            a = abs(m)
            base = _norm(deg, a) * p[(deg, a)]
            if m == 0:
                feats.append(base * (M0_QUIRK_FACTOR if quirk else 1.0))
            elif m > 0:
                feats.append(root2 * base * cos_m[a])
            else:
                feats.append(root2 * base * sin_m[a])
    return torch.stack(feats, dim=-1)


class SphericalHarmonics(nn.Module):
    """The positional encoding module (no parameters): ``embedding_dim = L²``."""

    def __init__(self, legendre_polys: int = 10, quirk: bool = False) -> None:
        super().__init__()
        self.L = self.M = int(legendre_polys)
        self.embedding_dim = self.L * self.M
        self.quirk = bool(quirk)

    def forward(self, lonlat: torch.Tensor) -> torch.Tensor:
        return spherical_harmonics(lonlat, self.L, self.quirk)
