"""Vision encoders: frozen SSL4EO-S12 MoCo backbones (torchgeo weights) with a trainable head,
or a small ViT from scratch (works offline). Names follow SatCLIP's (``visual.*``).

The MoCo backbones take 13 bands (B10 included); S2-100K has 12, so a zero B10 is inserted
at index 10, as SatCLIP's ``get_pretrained_s2_train_transform`` does.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from pipeline.errors import BadInputError, InputFileError

VISIONS = ("moco_resnet18", "moco_resnet50", "moco_vit16", "vit")
_TIMM = {"moco_resnet18": "resnet18", "moco_resnet50": "resnet50", "moco_vit16": "vit_small_patch16_224"}


def in_channels(vision: str) -> int:
    return 13 if vision.startswith("moco_") else 12


def moco_weights(vision: str) -> Any:
    from torchgeo.models import ResNet18_Weights, ResNet50_Weights, ViTSmall16_Weights

    return {
        "moco_resnet18": ResNet18_Weights.SENTINEL2_ALL_MOCO,
        "moco_resnet50": ResNet50_Weights.SENTINEL2_ALL_MOCO,
        "moco_vit16": ViTSmall16_Weights.SENTINEL2_ALL_MOCO,
    }[vision]


def build_moco(vision: str, embed_dim: int, pretrained: bool = True, image_size: int = 256) -> nn.Module:
    """timm backbone with torchgeo's SSL4EO MoCo weights (frozen) and a trainable head."""
    import timm

    kwargs: dict[str, Any] = {"in_chans": 13, "num_classes": embed_dim}
    if vision == "moco_vit16":
        kwargs["img_size"] = image_size
    model = timm.create_model(_TIMM[vision], **kwargs)
    if pretrained:
        weights = moco_weights(vision)
        try:
            state = weights.get_state_dict(progress=False)
        except Exception as exc:  # no network, no cached file
            raise InputFileError(
                f"cannot get the {vision} SSL4EO weights ({weights.url}): {exc}. Put the file in the torch hub "
                "cache (~/.cache/torch/hub/checkpoints) or train with --vision vit (from scratch, offline)"
            ) from exc
        state = {k: v for k, v in state.items() if not k.startswith(("fc.", "head."))}
        model.load_state_dict(state, strict=False)
    model.requires_grad_(False)
    head = model.head if vision == "moco_vit16" else model.fc
    head.requires_grad_(True)
    return model


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [("c_fc", nn.Linear(width, width * 4)), ("gelu", nn.GELU()), ("c_proj", nn.Linear(width * 4, width))]
            )
        )
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resblocks(x)


class VisionTransformer(nn.Module):
    """CLIP-style ViT (patch conv, class token, pre/post LayerNorm, projection), SatCLIP's names,
    plus a per-band input standardisation (``input_norm``)."""

    def __init__(
        self, image_size: int, patch_size: int, width: int, layers: int, heads: int, in_chans: int, output_dim: int
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise BadInputError(f"image size {image_size} is not a multiple of the patch size {patch_size}")
        # Reflectances/10 000 are small and alike across bands; standardising them per band lets a
        # ViT trained from scratch tell images apart from the first steps (its tokens otherwise
        # start nearly identical and the CLIP loss sits at log(batch) for a long time).
        self.input_norm = nn.BatchNorm2d(in_chans, affine=False)
        self.conv1 = nn.Conv2d(in_chans, width, kernel_size=patch_size, stride=patch_size, bias=False)
        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((image_size // patch_size) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.input_norm(x)).flatten(2).permute(0, 2, 1)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x).permute(1, 0, 2)
        x = self.transformer(x).permute(1, 0, 2)
        # Mean over all tokens, not the class token alone: a shallow ViT from scratch pools images apart sooner.
        return self.ln_post(x.mean(dim=1)) @ self.proj


def build_vision(
    vision: str,
    embed_dim: int,
    image_size: int = 256,
    pretrained: bool = True,
    vit_width: int = 128,
    vit_layers: int = 4,
    vit_patch: int = 32,
) -> nn.Module:
    if vision not in VISIONS:
        raise BadInputError(f"--vision must be one of {', '.join(VISIONS)}, got {vision!r}")
    if vision == "vit":
        return VisionTransformer(image_size, vit_patch, vit_width, vit_layers, max(1, vit_width // 64), 12, embed_dim)
    return build_moco(vision, embed_dim, pretrained=pretrained, image_size=image_size)
