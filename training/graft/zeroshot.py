"""GRAFT checkpoints for zero-shot evaluation: the trained satellite image encoder paired with the
CLIP text encoder of the teacher it was aligned to (text prompts go through CLIP's text tower, as
GRAFT does). :func:`load_graft_clip` returns an object with open_clip's CLIP interface
(``encode_image``, ``encode_text``, ``logit_scale``), so ``skyscript eval zeroshot`` can use it
in place of a CLIP model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import BadInputError, InputFileError
from training.graft.model import GraftEncoder

FORMAT = "skyscript-graft/1"


class GraftClip(nn.Module):
    """GRAFT image encoder + frozen CLIP text encoder, with the CLIP model interface."""

    def __init__(self, image_encoder: GraftEncoder, clip_model: nn.Module) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.clip = clip_model
        self.logit_scale = clip_model.logit_scale  # type: ignore[assignment]

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return self.image_encoder.encode_image(image)  # unit length either way

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        clip: Any = self.clip
        f = clip.encode_text(text)
        return F.normalize(f, dim=-1) if normalize else f

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scale: Any = self.logit_scale
        return self.encode_image(image, normalize=True), self.encode_text(text, normalize=True), scale.exp()


def is_graft_checkpoint(path: str | Path) -> bool:
    side = Path(path).with_suffix(".json")
    return side.is_file() and json.loads(side.read_text()).get("kind") == "graft"


def load_graft_clip(checkpoint: str | Path, device: str = "auto", text_pretrained: str | None = None
                    ) -> tuple[GraftClip, Any, Any]:
    """(model, preprocess, tokenizer) from a GRAFT checkpoint.

    The text encoder is the teacher recorded in the checkpoint (``text_pretrained`` overrides it,
    e.g. when the teacher checkpoint file moved). ``preprocess`` is the teacher's eval transform.
    """
    import open_clip

    from training.clip_models import load_clip

    p = Path(checkpoint)
    if not p.is_file():
        raise InputFileError(f"GRAFT checkpoint not found: {str(p)!r}")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputFileError(f"cannot read GRAFT checkpoint {str(p)!r}: {type(exc).__name__}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise BadInputError(f"{str(p)!r} is not a GRAFT checkpoint (expected format {FORMAT})")
    name = payload["model"]
    if name not in open_clip.list_models() and payload.get("model_cfg"):
        _register(name, payload["model_cfg"])
    bundle = load_clip(name, text_pretrained or payload.get("pretrained"), device=device)
    enc = GraftEncoder(bundle.model.visual)
    enc.visual.load_state_dict(payload["visual"])
    model = GraftClip(enc, bundle.model).to(bundle.device).eval()
    return model, bundle.preprocess_val, bundle.tokenizer


def _register(name: str, cfg: dict[str, Any]) -> None:
    """Make a config stored in the checkpoint known to open_clip (tiny/test or custom architectures)."""
    import tempfile

    import open_clip

    d = Path(tempfile.mkdtemp(prefix="graft_cfg_"))
    (d / f"{name}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(d)


def load_graft_bundle(checkpoint: str | Path, device: str = "auto", text_pretrained: str | None = None) -> Any:
    """The same as :func:`load_graft_clip`, packed as a :class:`training.clip_models.ClipBundle`, so
    ``training.evaluate.zeroshot.evaluate_zeroshot(cfg, bundle=load_graft_bundle(path))`` evaluates a
    GRAFT checkpoint unchanged (``is_graft_checkpoint`` tells when to)."""
    from training.clip_models import ClipBundle, resolve_device

    model, preprocess, tokenizer = load_graft_clip(checkpoint, device=device, text_pretrained=text_pretrained)
    payload_side = json.loads(Path(checkpoint).with_suffix(".json").read_text())
    p = Path(checkpoint)
    st = p.stat()
    return ClipBundle(model=model, preprocess_train=preprocess, preprocess_val=preprocess, tokenizer=tokenizer,
                      model_name=str(payload_side.get("model")), pretrained=str(p),
                      model_id=f"graft:{payload_side.get('model')}:{p.name}-{st.st_size}-{st.st_mtime_ns}",
                      device=resolve_device(device))
