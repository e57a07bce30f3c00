"""Loading CLIP models for scoring, training and evaluation: any open_clip name + pretrained tag
or a local checkpoint file, with one-line errors for the usual mistakes.

Checkpoints this toolkit writes are plain state dicts (tensors only, ``weights_only=True``) with a
sidecar ``<checkpoint>.json`` naming the architecture, so ``--model`` may be left out when
evaluating them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import BadInputError, InputFileError


@dataclass
class ClipBundle:
    """A loaded model with its transforms and tokenizer; ``model_id`` names the exact weights."""

    model: Any
    preprocess_train: Any
    preprocess_val: Any
    tokenizer: Any
    model_name: str
    pretrained: str | None
    model_id: str
    device: Any


def resolve_device(device: str) -> Any:
    """``auto`` → CUDA when visible, else CPU; ``cuda`` on a machine without one is an error."""
    import torch

    d = (device or "auto").strip().lower()
    if d == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if d.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BadInputError(f"--device {device}: no CUDA device is visible on this machine; use --device cpu")
        return torch.device(d)
    if d == "cpu":
        return torch.device("cpu")
    raise BadInputError(f"--device {device!r}: use auto, cuda, cuda:N or cpu")


def checkpoint_sidecar(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def read_checkpoint_model(path: str | Path) -> str | None:
    """The architecture recorded beside a checkpoint this toolkit wrote, if any."""
    side = checkpoint_sidecar(Path(path))
    if side.is_file():
        return json.loads(side.read_text(encoding="utf-8")).get("model")
    return None


def model_id(model_name: str, pretrained: str | None) -> str:
    """Stable name of the weights: ``ViT-L-14:openai``, ``tiny:file-ckpt.pt-<hash>``, ``X:random``."""
    if not pretrained:
        return f"{model_name}:random"
    p = Path(pretrained)
    if p.is_file():  # size + mtime: hashing a multi-GB file on every run would cost more than scoring a shard
        st = p.stat()
        tag = hashlib.sha256(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
        return f"{model_name}:file-{p.name}-{tag}"
    return f"{model_name}:{pretrained}"


def resolve_model_name(model: str | None, pretrained: str | None) -> str:
    """``--model`` when given, else the architecture recorded beside the checkpoint."""
    if model:
        return model
    if pretrained and Path(pretrained).is_file():
        found = read_checkpoint_model(pretrained)
        if found:
            return found
        side = checkpoint_sidecar(Path(pretrained)).name
        raise BadInputError(f"checkpoint {pretrained!r} has no architecture record ({side}); pass --model NAME")
    return "ViT-L-14"


def load_clip(
    model_name: str | None,
    pretrained: str | None,
    device: str = "auto",
    precision: str = "fp32",
    aug_cfg: dict[str, Any] | None = None,
    output_dict: bool = False,
) -> ClipBundle:
    """Create an open_clip model and its transforms, failing with one actionable line."""
    import open_clip

    pretrained = pretrained or None
    if pretrained is not None and pretrained.lower() in ("none", "random"):
        pretrained = None
    name = resolve_model_name(model_name, pretrained)
    if name not in open_clip.list_models():
        raise BadInputError(
            f"unknown open_clip model {name!r}; see open_clip.list_models() or register a config "
            "with open_clip.add_model_config"
        )
    looks_like_path = pretrained is not None and ("/" in pretrained or pretrained.endswith((".pt", ".pth", ".bin")))
    if looks_like_path and not Path(str(pretrained)).is_file():
        raise InputFileError(f"checkpoint not found: {pretrained!r}; pass an existing file or a pretrained tag")
    dev = resolve_device(device)
    try:
        model, pre_train, pre_val = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, device=dev, precision=precision, aug_cfg=aug_cfg, output_dict=output_dict
        )
    except (AssertionError, KeyError) as exc:  # open_clip's resize helpers assert on foreign shapes
        raise BadInputError(
            f"checkpoint {pretrained!r} does not fit model {name!r} ({exc}); pass the --model it was trained as"
        ) from None
    except RuntimeError as exc:
        msg = str(exc)
        if "size mismatch" in msg or "Missing key" in msg or "Unexpected key" in msg:
            raise BadInputError(
                f"checkpoint {pretrained!r} does not fit model {name!r} (another architecture?); "
                "pass the --model it was trained as"
            ) from None
        raise InputFileError(
            f"cannot load open_clip weights {name}:{pretrained} ({msg.splitlines()[0][:200]}). Without internet, "
            "pass a local checkpoint file as --pretrained"
        ) from None
    except (OSError, ValueError) as exc:
        raise InputFileError(
            f"cannot load open_clip weights {name}:{pretrained} ({str(exc).splitlines()[0][:200]}). "
            "Without internet, pass a local checkpoint file as --pretrained"
        ) from None
    tokenizer = open_clip.get_tokenizer(name)
    return ClipBundle(model, pre_train, pre_val, tokenizer, name, pretrained, model_id(name, pretrained), dev)
