"""Which rays to teach: the top of a random candidate pool by current error, plus a uniform share,
and each chosen ray's exact inclusion rate, so a loss can be re-weighted to stay unbiased.

A batch draws ``uniform`` rays uniformly from the ``n`` training rays and, independently, a pool of
``pool`` rays uniformly without replacement, of which it keeps the ``top`` with the largest error
(scores distinct, so every ray has a strict rank), and draws ``taught`` rays uniformly from those
kept. A ray that ``r`` rays outrank is kept with probability

    q(r) = pool / n * P[X <= top - 1],   X ~ Hypergeometric(n - 1 rays, r outranking, pool - 1 drawn)

(it must be drawn, and fewer than ``top`` of the other pool members may outrank it), and its
expected count in a batch is ``m = uniform / n + q(r) taught / top``. Weighting its loss by
``w = B / (n m)`` (``B = uniform + taught``) makes the weighted batch mean an unbiased estimate of
the mean loss over all ``n`` rays (Horvitz-Thompson), the correction Soft Mining applies to
importance-sampled rays. With no pool (``top = 0``) every weight is 1. nerfstudio draws pools with
replacement; for pools far smaller than ``n``, as here, the difference is negligible.

Example:
    >>> ranks = torch.tensor([0, 1, 2, 3])  # the best-ranked rays of n = 4, pool of 2, keep 1
    >>> [round(p, 4) for p in top_of_pool_probability(ranks, n=4, pool=2, top=1).tolist()]
    [0.5, 0.3333, 0.1667, 0.0]
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from nerf_loe.errors import ConfigError


def _log_choose(a: Tensor, b: Tensor) -> Tensor:
    """log C(a, b) for integer-valued float64 tensors, -inf where b < 0 or b > a."""
    valid = (b >= 0) & (b <= a)
    a_, b_ = torch.where(valid, a, 0.0), torch.where(valid, b, 0.0)
    value = torch.lgamma(a_ + 1) - torch.lgamma(b_ + 1) - torch.lgamma(a_ - b_ + 1)
    return torch.where(valid, value, torch.full_like(value, -torch.inf))


def top_of_pool_probability(rank: Int[Tensor, " m"], n: int, pool: int, top: int) -> Float[Tensor, " m"]:
    """Probability that a ray outranked by ``rank`` of the ``n`` rays is among the ``top`` of a
    uniform pool of ``pool`` rays (see the module docstring), float64."""
    if not 0 <= top <= pool <= n:
        raise ConfigError(f"teaching pool: need 0 <= top <= pool <= n (got {top}, {pool}, {n})")
    if top == 0:
        return torch.zeros(rank.shape, dtype=torch.float64, device=rank.device)
    r = rank.to(torch.float64)[:, None]
    j = torch.arange(top, dtype=torch.float64, device=rank.device)[None, :]  # outranking pool members
    others = torch.tensor(float(n - 1), dtype=torch.float64, device=rank.device)
    log_terms = (
        _log_choose(r, j)
        + _log_choose(others - r, pool - 1 - j)
        - _log_choose(others, others.new_tensor(pool - 1))
    )
    return pool / n * torch.exp(log_terms).sum(dim=1).clamp(max=1.0)


def teaching_weights(
    rank: Int[Tensor, " m"], n: int, pool: int, keep: int, uniform: int, taught: int
) -> Float[Tensor, " m"]:
    """Loss weights ``B / (n m)`` of chosen rays, ``B = uniform + taught``: a batch draws ``uniform``
    rays uniformly from all ``n`` and ``taught`` uniformly from the ``keep`` best of a ``pool``, so a
    ray's expected count is ``m = uniform / n + q(rank) taught / keep``. The weighted batch mean is
    then unbiased for the mean over all rays."""
    per_kept = taught / keep if keep > 0 else 0.0
    expected = uniform / n + top_of_pool_probability(rank, n, pool, keep) * per_kept
    return (uniform + taught) / (n * expected)


def top_of_pool(
    scores: Float[Tensor, " p"], top: int, generator: torch.Generator | None = None
) -> Int[Tensor, " k"]:
    """Indices of the ``top`` largest scores of a pool, ties broken at random (INT keeps the top-k
    errors; a random tie-break gives every ray the strict rank the probabilities assume)."""
    order = torch.randperm(len(scores), generator=generator, device=scores.device)
    return order[torch.topk(scores[order], top, sorted=False).indices]
