"""SatCLIP-style location encoders: spherical harmonics → SIREN, trained against image patches.

``load(PATH)`` returns the location encoder of this project's checkpoints and of SatCLIP's
released ones alike. torch is imported on first use of ``load``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.satclip.location import LocationEncoder


def load(path: Any, device: str = "cpu") -> LocationEncoder:
    """The float64 location encoder stored in a SatCLIP checkpoint (see :mod:`training.satclip.loader`)."""
    from training.satclip.loader import load as _load

    return _load(path, device=device)


__all__ = ["load"]
