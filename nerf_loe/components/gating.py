"""Sparse mixture-of-experts gating as the Neural Implicit Dictionary uses it (Wang et al., ICML
2022): each signal (scene) has E gate logits; the k largest in magnitude are kept with their signs
(no softmax), the rest are zero. Balancing losses keep the experts in use (Shazeer et al., 2017):

- importance of expert j: ``sum_s |g_sj|``; load: the number of signals that keep it;
- ``CV^2(v) = Var(v) / (mean(v)^2 + eps)`` (sample variance), zero when every expert is used alike;
- dense warm-up (all gates kept): ``0.01 mean|g| + 0.01 CV^2(importance)``;
  sparse phase: ``0.01 (CV^2(load) + CV^2(importance))``.

Example:
    >>> signed_top_k(torch.tensor([[0.5, -2.0, 1.0, 0.1]]), k=2)
    tensor([[ 0., -2.,  1.,  0.]])
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from nerf_loe.errors import ConfigError

EPS = 1e-10


def signed_top_k(logits: Float[Tensor, "s e"], k: int) -> Float[Tensor, "s e"]:
    """Gates: each row's ``k`` largest-magnitude logits, signs kept, the rest zero (gradients flow
    to the kept ones)."""
    if not 1 <= k <= logits.shape[-1]:
        raise ConfigError(f"top-k {k}: give 1 <= k <= {logits.shape[-1]} experts")
    if k == logits.shape[-1]:
        return logits
    keep = torch.zeros_like(logits, dtype=torch.bool)
    keep.scatter_(-1, logits.abs().topk(k, dim=-1).indices, True)
    return logits * keep


def cv_squared(values: Float[Tensor, " e"]) -> Float[Tensor, ""]:
    """Squared coefficient of variation (0 for equal values; 0 with fewer than two values)."""
    if values.numel() < 2:
        return values.new_zeros(())
    values = values.float()
    return values.var() / (values.mean() ** 2 + EPS)


def balancing_loss(gates: Float[Tensor, "s e"], dense: bool, weight: float = 0.01) -> Float[Tensor, ""]:
    """NID's auxiliary loss for the gates of the scenes in a batch (see the module docstring)."""
    importance = gates.abs().sum(dim=0)
    if dense:
        return weight * gates.abs().mean() + weight * cv_squared(importance)
    load = (gates != 0).float().sum(dim=0)
    return weight * (cv_squared(load) + cv_squared(importance))
