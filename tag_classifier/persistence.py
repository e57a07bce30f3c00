"""How a trained tag model is stored: plain arrays (``model.npz``) plus ``model.json`` — no pickles,
so a saved model loads in any scikit-learn version and prediction needs only numpy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import BadInputError, InputFileError
from tag_classifier.features import check_variant
from tag_classifier.priors import KeyPriors
from tag_classifier.stages import LinearStage

MODEL_FILE = "model.npz"
META_FILE = "model.json"
FORMAT_VERSION = 3  # 3: feature variants (per-key priors, value embedding) recorded in model.json
STAGE_ARRAYS = ("coef", "intercept", "classes", "basis", "normalization")


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n", encoding="utf-8")
    tmp.replace(path)


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def write_stage_arrays(d: Path, named: list[tuple[str, LinearStage]]) -> None:
    """Every stage's arrays into ``model.npz`` (atomic: temp file, then rename)."""
    arrays = {
        f"{name}_{f}": np.asarray(getattr(st, f))
        for name, st in named
        for f in STAGE_ARRAYS
        if getattr(st, f) is not None
    }
    tmp = d / (MODEL_FILE + ".tmp.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]  # numpy's stub mistypes **kwds
    tmp.replace(d / MODEL_FILE)


def read_model_files(d: Path) -> tuple[dict[str, Any], dict[str, LinearStage], KeyPriors | None]:
    """(meta, stages by name, priors) of a saved model; :class:`InputFileError` saying why not."""
    if not (d / META_FILE).is_file() or not (d / MODEL_FILE).is_file():
        raise InputFileError(
            f"no trained tag model in {str(d)!r} (expected {META_FILE} and {MODEL_FILE}); "
            "create one with: skyscript tags train --out DIR"
        )
    try:
        meta = json.loads((d / META_FILE).read_text(encoding="utf-8"))
        if meta.get("format_version") != FORMAT_VERSION:
            raise KeyError(f"format_version {meta.get('format_version')!r}, this version reads {FORMAT_VERSION}")
        variant = check_variant(str(meta["variant"]))
        z = np.load(d / MODEL_FILE, allow_pickle=False)
        names = ("stage1", "stage2", "base1", "base2") if "prior" in variant else ("stage1", "stage2")
        stages = {
            name: LinearStage(
                coef=z[f"{name}_coef"],
                intercept=z[f"{name}_intercept"],
                classes=z[f"{name}_classes"],
                C=float(meta[f"{name}_C"]),
                basis=z[f"{name}_basis"] if f"{name}_basis" in z.files else None,
                normalization=z[f"{name}_normalization"] if f"{name}_normalization" in z.files else None,
                gamma=float(meta.get(f"{name}_gamma", 0.0)),
                prior_weight=float(meta[f"{name}_prior_weight"]),
                input_dims=int(meta[f"{name}_input_dims"]),
            )
            for name in names
        }
        priors = None if meta.get("priors") is None else KeyPriors.from_json(meta["priors"])
        if ("prior" in variant) != (priors is not None):
            raise KeyError("priors")
    except (OSError, ValueError, KeyError, TypeError, BadInputError) as exc:
        raise InputFileError(
            f"tag model in {str(d)!r} is unreadable or from another version ({exc}); retrain it"
        ) from None
    return meta, stages, priors
