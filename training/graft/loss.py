"""GRAFT losses (Mall et al., ICLR 2024), on L2-normalised embeddings with a fixed temperature.

Image level: for satellite image ``i`` with ground photos ``G_i``,

    L_I(i) = 1/|G_i| Σ_{g ∈ G_i} -log( exp(<s_i, g>/τ) / Σ_{g' ∈ batch} exp(<s_i, g'>/τ) )

every ground photo of the tile is a positive; the photos of the other tiles in the batch are the
negatives (the denominator runs over all ground photos of the batch). The batch loss is the mean
over tiles that have at least one photo.

Pixel level: the same, anchored on the patch token under each photo, ``p_j``:

    L_P(j) = -log( exp(<p_j, g_j>/τ) / Σ_{g' ∈ batch} exp(<p_j, g'>/τ) )

averaged over each tile's photos that fall inside the (augmented) crop, then over tiles (as the
image-level loss).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TEMPERATURE = 0.07


def multi_positive_loss(sat: torch.Tensor, ground: torch.Tensor, owner: torch.Tensor,
                        temperature: float = TEMPERATURE) -> torch.Tensor:
    """``sat`` [B, D], ``ground`` [N, D] (both L2-normalised), ``owner`` [N]: the tile index of each photo."""
    if ground.shape[0] == 0:
        raise ValueError("a GRAFT batch needs at least one ground photo")
    logp = F.log_softmax(sat @ ground.T / temperature, dim=1)  # [B, N]
    pos = owner.unsqueeze(0) == torch.arange(sat.shape[0], device=sat.device).unsqueeze(1)  # [B, N]
    n_pos = pos.sum(dim=1)
    has = n_pos > 0
    per_tile = -(logp * pos).sum(dim=1)[has] / n_pos[has]
    return per_tile.mean()


def pixel_loss(patch: torch.Tensor, ground: torch.Tensor, owner: torch.Tensor, valid: torch.Tensor | None = None,
               temperature: float = TEMPERATURE) -> torch.Tensor:
    """``patch`` [N, D]: the (normalised) patch token under photo ``j``; ``ground`` [N, D]; ``owner`` [N]:
    the tile of each photo; ``valid`` [N] bool (photo inside the crop)."""
    logp = F.log_softmax(patch @ ground.T / temperature, dim=1)
    terms = -logp.diagonal()
    keep = valid if valid is not None else torch.ones_like(terms, dtype=torch.bool)
    if not bool(keep.any()):
        return patch.sum() * 0.0  # no photo inside the crop: no pixel signal, keep the graph
    n_tiles = int(owner.max()) + 1
    sums = torch.zeros(n_tiles, dtype=terms.dtype, device=terms.device).index_add(0, owner[keep], terms[keep])
    counts = torch.zeros(n_tiles, dtype=terms.dtype, device=terms.device).index_add(
        0, owner[keep], torch.ones_like(terms[keep]))
    has = counts > 0
    return (sums[has] / counts[has]).mean()
