"""A linear layer whose weight matrix is chosen per sample from a bank (Levels-of-Experts layer).

``h_out = sum_k w_k W[j_k] h + b``: the banks ``W[j]`` are selected by a :class:`Tiling`; the bias
is shared. With one bank it is exactly ``nn.Linear``. Compute per sample equals one dense layer
(nearest blending) or ``2^d`` of them (linear blending), whatever the number of banks.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor, nn

from nerf_loe.components.routing import Routes
from nerf_loe.components.tiling import BankSelection


class TiledLinear(nn.Module):
    """``num_banks`` weight matrices of shape [out, in] and one shared bias."""

    def __init__(self, in_features: int, out_features: int, num_banks: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.num_banks = num_banks
        self.weight = nn.Parameter(torch.empty(num_banks, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Linear's default initialisation, applied to every bank independently."""
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(
        self, x: Float[Tensor, "n d_in"], selection: BankSelection, routes: list[Routes] | None = None
    ) -> Float[Tensor, "n d_out"]:
        """Apply the selected banks. ``routes`` may pass precomputed groupings (one per candidate)."""
        if routes is None:
            routes = [Routes(index, self.num_banks) for index in selection.index]
        if selection.weight is None:
            return routes[0].apply(x, self.weight) + self.bias
        out = self.bias.expand(x.shape[0], -1)
        for route, w in zip(routes, selection.weight, strict=True):
            out = out + w[:, None] * route.apply(x, self.weight)
        return out

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, banks={self.num_banks}"
