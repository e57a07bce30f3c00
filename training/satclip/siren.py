"""SIREN (sine-activated MLP) with SatCLIP's parameter names: ``layers.N.{weight,bias}``, ``last_layer.*``.

Initialisation as in the SIREN paper: first layer U(−1/d, 1/d) with ω₀ = 30, later layers
U(−√(6/d)/ω, √(6/d)/ω) with ω = 1; dropout (p = 0.5) on the hidden layers' pre-activations.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SirenLayer(nn.Module):
    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        w0: float = 1.0,
        c: float = 6.0,
        is_first: bool = False,
        final: bool = False,
        dropout: bool = False,
    ) -> None:
        super().__init__()
        self.w0, self.final, self.dropout = w0, final, dropout
        bound = (1.0 / dim_in) if is_first else (math.sqrt(c / dim_in) / w0)
        self.weight = nn.Parameter(torch.empty(dim_out, dim_in).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(dim_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)
        if self.dropout:
            out = F.dropout(out, training=self.training)
        return out if self.final else torch.sin(self.w0 * out)


class SirenNet(nn.Module):
    def __init__(
        self,
        dim_in: int,
        dim_hidden: int,
        dim_out: int,
        num_layers: int,
        w0: float = 1.0,
        w0_initial: float = 30.0,
        dropout: bool = True,
    ) -> None:
        super().__init__()
        self.dim_in, self.dim_hidden, self.dim_out, self.num_layers = dim_in, dim_hidden, dim_out, num_layers
        self.layers = nn.ModuleList(
            SirenLayer(
                dim_in if i == 0 else dim_hidden,
                dim_hidden,
                w0_initial if i == 0 else w0,
                is_first=i == 0,
                dropout=dropout,
            )
            for i in range(num_layers)
        )
        self.last_layer = SirenLayer(dim_hidden, dim_out, w0, final=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.last_layer(x)
