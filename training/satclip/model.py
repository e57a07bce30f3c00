"""The SatCLIP model: vision encoder + float64 location encoder + learnable temperature.

Attribute names match SatCLIP's ``SatCLIP`` module (``visual``, ``posenc``, ``nnet``,
``location``, ``logit_scale``), so a state dict saved here has the same keys as theirs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from training.satclip.location import LocationConfig, LocationEncoder


class SatCLIPModel(nn.Module):
    def __init__(self, visual: nn.Module, loc: LocationConfig) -> None:
        super().__init__()
        self.visual = visual
        self.location = LocationEncoder(loc)
        self.posenc = self.location.posenc
        self.nnet = self.location.nnet
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return self.visual(image)

    def encode_location(self, lonlat: torch.Tensor) -> torch.Tensor:
        return self.location(lonlat.double())

    def forward(self, image: torch.Tensor, lonlat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img = F.normalize(self.encode_image(image).float(), dim=1)
        loc = F.normalize(self.encode_location(lonlat).float(), dim=1)
        logits = self.logit_scale.exp() * img @ loc.t()
        return logits, logits.t()


def clip_loss(logits_per_image: torch.Tensor, logits_per_location: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE: each image's own location is its class, and vice versa."""
    labels = torch.arange(logits_per_image.shape[0], device=logits_per_image.device)
    return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_location, labels)) / 2


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, object]]:
    """AdamW groups: no decay on norms, biases, 1-d gains and the temperature (as CLIP/SatCLIP)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "bn" in name or "ln" in name or "norm" in name or "bias" in name or "logit_scale" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]
