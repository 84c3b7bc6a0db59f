"""SIREN: sine-activated layers and their initialisation (Sitzmann et al., NeurIPS 2020).

A layer computes ``sin(w0 * (W h + b))``. The initialisation keeps every layer's pre-activation
``w0 (W h + b)`` close to a unit normal whatever the depth: the first layer draws ``W, b`` from
``U(-1/in, 1/in)`` (inputs in [-1, 1] then span a few periods of the sine), later layers from
``U(-sqrt(6/in)/w0, sqrt(6/in)/w0)``, so that for arcsine-distributed inputs (the output of a
sine) ``w0 W h`` has unit variance. The output layer is linear, with the later-layer init.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor, nn


def siren_init_(layer: nn.Linear, w0: float, first: bool) -> None:
    """SIREN initialisation of ``layer`` (weight and bias) in place."""
    bound = 1.0 / layer.in_features if first else math.sqrt(6.0 / layer.in_features) / w0
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound)
        if layer.bias is not None:
            layer.bias.uniform_(-bound, bound)


class Sine(nn.Module):
    """``sin(w0 * x)``."""

    def __init__(self, w0: float) -> None:
        super().__init__()
        self.w0 = w0

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.w0 * x)


class Siren(nn.Module):
    """``num_layers`` linear layers, sines between them, a linear output (FieldComponent shape:
    ``in_dim``, ``get_out_dim``, any leading batch shape).

    Example:
        >>> net = Siren(in_dim=2, hidden_dim=32, out_dim=3, num_layers=4)
        >>> net(torch.rand(5, 7, 2)).shape
        torch.Size([5, 7, 3])
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int, w0: float = 30.0) -> None:
        super().__init__()
        if num_layers < 2:
            raise ValueError(f"a SIREN needs at least 2 layers (one sine), got {num_layers}")
        self.in_dim, self.out_dim = in_dim, out_dim
        widths = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        for i, layer in enumerate(self.layers):
            siren_init_(layer, w0, first=i == 0)
        self.sine = Sine(w0)

    def get_out_dim(self) -> int:
        return self.out_dim

    def forward(self, x: Float[Tensor, "*b i"]) -> Float[Tensor, "*b o"]:
        for layer in self.layers[:-1]:
            x = self.sine(layer(x))
        return self.layers[-1](x)

    def macs_per_sample(self) -> int:
        return sum(layer.in_features * layer.out_features for layer in self.layers)
