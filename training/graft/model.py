"""The GRAFT satellite encoder: an open_clip ViT initialised from CLIP, projecting into the frozen
CLIP image-embedding space (the visual tower's own projection; patch tokens go through it too, so
the pixel-level model aligns every patch with that space)."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import BadInputError


class GraftEncoder(nn.Module):
    """``forward(images)`` → (image embedding [B, D], patch embeddings [B, P, D]), both normalised."""

    def __init__(self, clip_visual: nn.Module) -> None:
        super().__init__()
        if not hasattr(clip_visual, "proj") or not hasattr(clip_visual, "grid_size"):
            raise BadInputError(
                f"GRAFT needs a ViT image tower (open_clip VisionTransformer); got {type(clip_visual).__name__}"
            )
        visual: Any = copy.deepcopy(clip_visual)  # trained copy; the teacher stays frozen
        visual.output_tokens = True
        self.visual = visual

    @property
    def grid(self) -> tuple[int, int]:
        g = self.visual.grid_size
        return (int(g[0]), int(g[1]))

    @property
    def image_size(self) -> int:
        s: Any = self.visual.image_size
        return int(s[0] if isinstance(s, tuple | list) else s)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled, tokens = self.visual(images)
        proj = self.visual.proj
        patches = tokens @ proj if proj is not None else tokens
        return F.normalize(pooled, dim=-1), F.normalize(patches, dim=-1)

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        emb, _ = self.forward(images)
        return emb  # always unit length: the CLIP space is compared by cosine

    def patch_index(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Flat patch index of model-input pixel coordinates (clamped to the grid)."""
        gh, gw = self.grid
        ph, pw = self.image_size / gh, self.image_size / gw
        col = torch.clamp((x / pw).floor().long(), 0, gw - 1)
        row = torch.clamp((y / ph).floor().long(), 0, gh - 1)
        return row * gw + col
