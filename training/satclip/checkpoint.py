"""Checkpoints in SatCLIP's (Lightning's) layout: ``state_dict`` with ``model.``-prefixed keys and
``hyper_parameters`` with SatCLIP's names, plus this project's ``skyscript`` block, optimizer
state and counters for resuming. Written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from storage.atomic import publishing

FORMAT = 1


def hyper_parameters(cfg: Any, in_chans: int) -> dict[str, Any]:
    """SatCLIP's ``SatCLIPLightningModule`` argument names, so its ``get_satclip`` finds what it expects."""
    return {
        "embed_dim": cfg.embed_dim,
        "image_resolution": cfg.image_size,
        "vision_layers": cfg.vision if cfg.vision != "vit" else cfg.vit_layers,
        "vision_width": cfg.vit_width,
        "vision_patch_size": cfg.vit_patch,
        "in_channels": in_chans,
        "le_type": "sphericalharmonics",
        "pe_type": "siren",
        "legendre_polys": cfg.legendre,
        # "analytic" is SatCLIP's name for the quirky m = 0 scaling; orthonormal harmonics get another name.
        "harmonics_calculation": "analytic" if cfg.sh_quirk else "orthonormal",
        "frequency_num": 16,
        "max_radius": 260,
        "min_radius": 1,
        "sh_embedding_dims": 32,
        "num_hidden_layers": cfg.num_hidden_layers,
        "capacity": cfg.capacity,
        "learning_rate": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "eval_downstream": False,
        "air_temp_data_path": None,
        "election_data_path": None,
    }


def save(path: Path, model: torch.nn.Module, hparams: dict[str, Any], extra: dict[str, Any]) -> None:
    state = {f"model.{k}": v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"state_dict": state, "hyper_parameters": hparams, **extra}
    with publishing(path) as tmp:
        torch.save(payload, tmp)


def read(path: str | Path) -> dict[str, Any]:
    from pipeline.errors import InputFileError

    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"checkpoint not found: {str(p)!r}")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception:
        try:
            # Lightning checkpoints may pickle non-tensor objects in hyper_parameters; only load trusted files.
            return torch.load(p, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise InputFileError(f"{str(p)!r} is not a readable torch checkpoint: {exc}") from exc
