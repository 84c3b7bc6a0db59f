"""Where a method's experts are: the bank (LoE, Partition) or cell (ASMR) holding each pixel's
expected surface point, colour-coded, computed only when rendering without gradients.

Colour rule: region ``k`` gets hue ``frac(k * 0.618034)`` (the golden-ratio conjugate, so
consecutive ids land far apart on the colour wheel) at saturation 0.7 and value 0.95; pixels whose
ray is mostly transparent (accumulation below 0.5) are black.

Example:
    >>> region_colors(torch.tensor([0, 1, 2]))
    tensor([[0.9500, 0.2850, 0.2850],
            [0.2850, 0.4790, 0.9500],
            [0.6731, 0.9500, 0.2850]])
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

GOLDEN = 0.6180339887498949


def region_colors(ids: Int[Tensor, " n"]) -> Float[Tensor, "n 3"]:
    """One colour per region id (see the module docstring), RGB in [0, 1]."""
    hue = torch.frac(ids.double() * GOLDEN)
    saturation, value = 0.7, 0.95
    # HSV -> RGB: channel n (5 red, 3 green, 1 blue) is V - V S clamp(min(k, 4 - k), 0, 1),
    # k = (n + 6 hue) mod 6
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = (n + 6.0 * hue).remainder(6.0)
        channels.append(value - value * saturation * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(channels, dim=-1).to(torch.float32)


def region_map(region_ids: Int[Tensor, " n"], accumulation: Float[Tensor, "n 1"]) -> Float[Tensor, "n 3"]:
    """Colour-coded regions, black where the ray is mostly transparent."""
    colors = region_colors(region_ids).to(accumulation.device)
    return torch.where(accumulation >= 0.5, colors, torch.zeros_like(colors))
