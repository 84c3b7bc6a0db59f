"""FreeNeRF's frequency regularisation (Yang et al., CVPR 2023): the positional encoding's
frequencies are released from low to high as training proceeds, so few-view training cannot fit
high-frequency noise early.

FreeNeRF counts the encoding in groups of ``d`` channels, group 0 the raw position. Here the groups
follow the paper's intent, low frequencies first: ``sin`` and ``cos`` of each frequency in turn
(group ``1 + 2k`` is ``sin(2^k x)``, ``2 + 2k`` its ``cos``), ``G = 1 + 2F`` groups in all. (The
official code masks mip-NeRF's layout, every ``sin`` band before any ``cos`` band, so it releases
the highest ``sin`` before the lowest ``cos``; we keep the paper's order.) At progress
``p = t / T`` (``T`` the regularised steps) with ``ptr = G p + 1``, groups below ``floor(ptr)``
pass, group ``floor(ptr)`` is scaled by ``frac(ptr)``, the rest are zero; from ``p = 1`` on
everything passes.

Example (2 frequencies, G = 5 groups):
    >>> freenerf_visibility(5, 0.0).tolist(), freenerf_visibility(5, 0.5).tolist()
    ([1.0, 0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.5, 0.0])
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor, nn


def freenerf_visibility(num_groups: int, progress: float) -> Float[Tensor, " g"]:
    """Weight of each of ``num_groups`` channel groups at ``progress`` (see the module docstring)."""
    if progress >= 1.0:
        return torch.ones(num_groups)
    ptr = num_groups * max(progress, 0.0) + 1.0
    whole = math.floor(ptr)
    groups = torch.arange(num_groups)
    return (groups < whole).float() + (groups == whole).float() * (ptr - whole)


class FrequencyMask(nn.Module):
    """FreeNeRF's mask on nerfstudio's ``NeRFEncoding`` output (layout: ``sin`` of every axis and
    frequency, axis-major, then ``cos`` likewise, then the raw input when included).

    Args:
        in_dim: encoded coordinates.
        num_frequencies: the encoding's frequencies.
        include_input: whether the raw input ends the encoding.

    ``progress`` (``t / T``, a buffer, so checkpoints keep it) is set by the model each training
    step; 1 (no mask) until then.
    """

    def __init__(self, in_dim: int, num_frequencies: int, include_input: bool = True) -> None:
        super().__init__()
        k = torch.arange(num_frequencies).repeat(in_dim)  # axis-major: frequency of each channel
        groups = [1 + 2 * k, 2 + 2 * k] + ([torch.zeros(in_dim, dtype=torch.long)] if include_input else [])
        self.register_buffer("groups", torch.cat(groups), persistent=False)
        self.num_groups = 1 + 2 * num_frequencies
        self.register_buffer("progress", torch.tensor(1.0))

    def forward(self, encoded: Float[Tensor, "*b c"]) -> Float[Tensor, "*b c"]:
        progress = float(self.progress)
        if progress >= 1.0:
            return encoded
        weights = freenerf_visibility(self.num_groups, progress).to(encoded)[self.groups]
        return encoded * weights
