"""Packed volume rendering: transmittance, alpha and weights from densities, and compositing.

For the samples of one ray, ``tau_i = sigma_i (t_end_i - t_start_i)``,
``alpha_i = 1 - exp(-tau_i)``, ``T_i = exp(-sum_{j<i} tau_j)`` and ``w_i = T_i alpha_i``.
The torch backend computes the per-ray exclusive sum with one global cumulative sum (in float64,
so long packed lists do not lose precision) minus each ray's offset; it needs samples sorted by
ray, which marching guarantees. Gradients flow to densities (and colours when compositing).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from nerf_loe.rendering.backend import Backend, resolve_backend

MAX_OPTICAL_DEPTH = 30.0
"""Per-sample optical depth cap in the transmittance sums: exp(-30) ~ 1e-13 already hides all
behind, and the cap keeps the batch-wide float64 prefix sums finite and exact (one infinite or
huge density would otherwise poison every later ray with inf - inf or rounding)."""


def _exclusive_segment_sum(values: Tensor, ray_indices: Tensor, n_rays: int) -> Tensor:
    inclusive = torch.cumsum(values.double(), 0)
    exclusive = torch.cat([inclusive.new_zeros(1), inclusive])  # exclusive[i] = sum of values[:i]
    counts = torch.bincount(ray_indices, minlength=n_rays)
    first = torch.cumsum(counts, 0) - counts
    # index_select, not [ ]: its backward is index_add, [ ]'s a serial accumulate on the CPU
    return (exclusive[:-1] - exclusive.index_select(0, first[ray_indices])).to(values.dtype)


def render_weights(
    t_starts: Float[Tensor, " n"],
    t_ends: Float[Tensor, " n"],
    sigmas: Float[Tensor, " n"],
    ray_indices: Int[Tensor, " n"],
    n_rays: int,
    backend: Backend = "auto",
) -> tuple[Float[Tensor, " n"], Float[Tensor, " n"], Float[Tensor, " n"]]:
    """Weights, transmittance (before each sample) and alpha of packed samples.

    Example: one ray, two unit-length samples of density ``ln 2``: each lets half the light
    through, so transmittance is 1 then 1/2 and the weights are 1/2 and 1/4::

        >>> t, ray = torch.tensor([0.0, 1.0]), torch.zeros(2, dtype=torch.long)
        >>> w, trans, alpha = render_weights(t, t + 1, torch.full((2,), math.log(2)), ray, 1)
        >>> w, trans
        (tensor([0.5000, 0.2500]), tensor([1.0000, 0.5000]))
    """
    if resolve_backend(backend, sigmas) == "nerfacc":
        from nerfacc.volrend import render_weight_from_density

        return render_weight_from_density(t_starts, t_ends, sigmas, ray_indices=ray_indices, n_rays=n_rays)
    tau = sigmas * (t_ends - t_starts)
    trans = torch.exp(-_exclusive_segment_sum(tau.clamp(max=MAX_OPTICAL_DEPTH), ray_indices, n_rays))
    alphas = 1.0 - torch.exp(-tau)
    return trans * alphas, trans, alphas


def visible_samples(
    t_starts: Float[Tensor, " n"],
    t_ends: Float[Tensor, " n"],
    density_of: Callable[[Int[Tensor, " m"]], Float[Tensor, " m"]],
    ray_indices: Int[Tensor, " n"],
    n_rays: int,
    early_stop_eps: float = 1e-4,
    alpha_thre: float = 0.0,
    first_window: int = 32,
    backend: Backend = "auto",
) -> Bool[Tensor, " n"]:
    """Samples worth shading: transmittance above ``early_stop_eps`` (early ray termination)
    and alpha above ``alpha_thre`` (empty-space skipping).

    ``density_of(indices)`` gives the densities of the packed samples at ``indices``. They are
    asked for front to back, in windows of each ray's samples (the first ``first_window`` of
    every ray, then windows twice as long), and only for rays still above ``early_stop_eps``. The
    mask is exact (a sample's transmittance depends only on the samples before it, and only falls),
    but the densities cost only up to where each ray turns opaque, plus at most one window:
    on rays that march far past their surface (unbounded scenes) that is a fraction of the
    samples. ``first_window=0`` asks for all samples at once, as nerfacc's single pre-pass does.

    Example: one ray, four unit-length samples; the second is opaque, so the last two are hidden
    and only the first two windows of one sample each are evaluated::

        >>> t, ray = torch.arange(4.0), torch.zeros(4, dtype=torch.long)
        >>> sigmas, asked = torch.tensor([0.0, 20.0, 1.0, 1.0]), []
        >>> density_of = lambda i: asked.append(i.tolist()) or sigmas[i]
        >>> visible_samples(t, t + 1, density_of, ray, 1, first_window=1)
        tensor([ True,  True, False, False])
        >>> asked
        [[0], [1, 2]]
    """
    n = len(ray_indices)
    keep = torch.zeros(n, dtype=torch.bool, device=ray_indices.device)
    counts = torch.bincount(ray_indices, minlength=n_rays)
    order = torch.arange(n, device=ray_indices.device)
    rank = order - (torch.cumsum(counts, 0) - counts)[ray_indices]  # position along its ray
    log_trans = torch.zeros(n_rays, dtype=torch.float64, device=ray_indices.device)  # before window
    log_eps = math.log(early_stop_eps)
    pending, start, size = order, 0, first_window if first_window > 0 else max(n, 1)
    while pending.numel():
        end = start + size
        in_window = rank[pending] < end
        idx, pending = pending[in_window], pending[~in_window]
        rays = ray_indices[idx]
        sigmas = density_of(idx)
        _, trans, alphas = render_weights(t_starts[idx], t_ends[idx], sigmas, rays, n_rays, backend)
        trans = trans * torch.exp(log_trans[rays]).to(trans.dtype)
        keep[idx] = (trans >= early_stop_eps) & (alphas >= alpha_thre)
        tau = sigmas.detach() * (t_ends[idx] - t_starts[idx])
        log_trans.index_add_(0, rays, -tau.clamp(max=MAX_OPTICAL_DEPTH).double())
        pending = pending[log_trans[ray_indices[pending]] >= log_eps]
        start, size = end, size * 2
    return keep


def accumulate(
    values: Float[Tensor, "n c"], weights: Float[Tensor, " n"], ray_indices: Int[Tensor, " n"], n_rays: int
) -> Float[Tensor, "r c"]:
    """Per-ray weighted sum of sample values."""
    out = torch.zeros(n_rays, values.shape[-1], dtype=values.dtype, device=values.device)
    return out.index_add(0, ray_indices, weights[:, None] * values)


def last_sample_index(
    ray_indices: Int[Tensor, " n"], n_rays: int
) -> tuple[Int[Tensor, " r"], Bool[Tensor, " r"]]:
    """Index of each ray's last sample in the packed list, and whether the ray has any sample."""
    order = torch.arange(len(ray_indices), device=ray_indices.device)
    last = torch.zeros(n_rays, dtype=torch.long, device=ray_indices.device).scatter_reduce(
        0, ray_indices, order, reduce="amax", include_self=False
    )
    return last, torch.bincount(ray_indices, minlength=n_rays) > 0


def distortion(
    weights: Float[Tensor, " n"],
    t_starts: Float[Tensor, " n"],
    t_ends: Float[Tensor, " n"],
    ray_indices: Int[Tensor, " n"],
    n_rays: int,
) -> Float[Tensor, " r"]:
    """mip-NeRF 360's distortion loss per ray, on packed samples sorted by ray and distance.

    ``L = sum_{i,j} w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 (t_end_i - t_start_i)`` with midpoints
    ``m``: small when a ray's weight sits in one compact interval (a surface, or nothing), large
    when it is spread along the ray (fog, floaters). The pair sum is
    ``2 sum_i w_i (m_i W_i - S_i)`` with ``W_i``, ``S_i`` the exclusive per-ray sums of ``w`` and
    ``w m``, so the cost is linear in the samples.

    Example: one ray, two unit-weight samples at midpoints 0.5 and 2.5 of width 1 give
    ``2 * 1 * 1 * 2 + (1 + 1) / 3``::

        >>> starts, ends = torch.tensor([0.0, 2.0]), torch.tensor([1.0, 3.0])
        >>> distortion(torch.ones(2), starts, ends, torch.zeros(2, dtype=torch.long), 1)
        tensor([4.6667])
    """
    mid = (t_starts + t_ends) / 2
    before_w = _exclusive_segment_sum(weights, ray_indices, n_rays)
    before_wm = _exclusive_segment_sum(weights * mid, ray_indices, n_rays)
    per_sample = 2 * weights * (mid * before_w - before_wm) + weights.square() * (t_ends - t_starts) / 3
    return torch.zeros(n_rays, dtype=weights.dtype, device=weights.device).index_add(
        0, ray_indices, per_sample
    )
