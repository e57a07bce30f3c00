"""``load(PATH)``: the location encoder of a SatCLIP checkpoint — this project's or a released one.

Both are Lightning-layout files whose state dict holds ``model.location.nnet.*`` (SIREN) and
whose ``hyper_parameters`` name the harmonics. ``harmonics_calculation="analytic"`` (every
released model) means the m = 0 quirk; this project's orthonormal models say
``"orthonormal"``. SatCLIP's ``"closed-form"`` harmonics differ by the Condon–Shortley
sign on odd m and are not supported (no released model uses them).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from pipeline.errors import BadInputError
from training.satclip.checkpoint import read
from training.satclip.location import LocationConfig, LocationEncoder

PREFIXES = ("model.location.", "location.")


def _location_state(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    for prefix in PREFIXES:
        sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if sub:
            return sub
    if any(k.startswith("nnet.") for k in state):
        return {k: v for k, v in state.items() if k.startswith("nnet.")}
    raise BadInputError("no location encoder weights (model.location.nnet.*) in the checkpoint")


def location_config(ckpt: dict[str, Any], state: dict[str, torch.Tensor], path: str) -> LocationConfig:
    hp = ckpt.get("hyper_parameters") or {}
    le, pe = hp.get("le_type", "sphericalharmonics"), hp.get("pe_type", "siren")
    if le != "sphericalharmonics" or pe != "siren":
        raise BadInputError(f"{path}: location encoder {le}+{pe}; only sphericalharmonics+siren is supported")
    calc = hp.get("harmonics_calculation", "analytic")
    if calc not in ("analytic", "orthonormal"):
        raise BadInputError(f"{path}: harmonics_calculation={calc!r} is not supported (analytic or orthonormal)")
    try:
        first, last = state["nnet.layers.0.weight"], state["nnet.last_layer.weight"]
    except KeyError as exc:
        raise BadInputError(f"{path}: the location weights lack {exc.args[0]}; not a SIREN location encoder") from exc
    layers = len({k.split(".")[2] for k in state if k.startswith("nnet.layers.")})
    legendre = int(hp.get("legendre_polys") or round(math.sqrt(first.shape[1])))
    return LocationConfig(
        legendre_polys=legendre,
        embed_dim=int(last.shape[0]),
        capacity=int(first.shape[0]),
        num_hidden_layers=int(hp.get("num_hidden_layers") or layers),
        sh_quirk=calc == "analytic",
    )


def load(path: str | Path, device: str = "cpu") -> LocationEncoder:
    """A float64 location encoder in eval mode: ``load(p)(torch.tensor([[lon, lat]]))``."""
    ckpt = read(path)
    state_all = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state_all, dict):
        raise BadInputError(f"{path}: not a checkpoint dictionary")
    state = _location_state(state_all)
    cfg = location_config(ckpt, state, str(path))
    enc = LocationEncoder(cfg)
    want = enc.state_dict()
    for key, value in state.items():
        if key in want and tuple(want[key].shape) != tuple(value.shape):
            raise BadInputError(
                f"{path}: {key} has shape {tuple(value.shape)}, but legendre_polys={cfg.legendre_polys}, "
                f"capacity={cfg.capacity} needs {tuple(want[key].shape)}; the checkpoint's hyper_parameters "
                "do not match its weights"
            )
    missing, unexpected = enc.load_state_dict({k: v.double() for k, v in state.items()}, strict=False)
    if missing or unexpected:
        raise BadInputError(f"{path}: location weights do not fit (missing {missing}, unexpected {unexpected})")
    return enc.to(device).eval()
