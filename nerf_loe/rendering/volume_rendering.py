"""Packed volume rendering: transmittance, alpha and weights from densities, and compositing.

For the samples of one ray, ``tau_i = sigma_i (t_end_i - t_start_i)``,
``alpha_i = 1 - exp(-tau_i)``, ``T_i = exp(-sum_{j<i} tau_j)`` and ``w_i = T_i alpha_i``.
The torch backend computes the per-ray exclusive sum with one global cumulative sum (in float64,
so long packed lists do not lose precision) minus each ray's offset; it needs samples sorted by
ray, which marching guarantees. Gradients flow to densities (and colours when compositing).
"""

from __future__ import annotations

from typing import Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from nerf_loe.rendering.backend import Backend, resolve_backend

BackgroundColor = Literal["white", "black", "random", "last_sample"]

MAX_OPTICAL_DEPTH = 30.0
"""Per-sample optical depth cap in the transmittance sums: exp(-30) ~ 1e-13 already hides all
behind, and the cap keeps the batch-wide float64 prefix sums finite and exact (one infinite or
huge density would otherwise poison every later ray with inf - inf or rounding)."""


def _exclusive_segment_sum(values: Tensor, ray_indices: Tensor, n_rays: int) -> Tensor:
    inclusive = torch.cumsum(values.double(), 0)
    exclusive = torch.cat([inclusive.new_zeros(1), inclusive])  # exclusive[i] = sum of values[:i]
    counts = torch.bincount(ray_indices, minlength=n_rays)
    first = torch.cumsum(counts, 0) - counts
    return (exclusive[:-1] - exclusive[first][ray_indices]).to(values.dtype)


def render_weights(
    t_starts: Float[Tensor, " n"],
    t_ends: Float[Tensor, " n"],
    sigmas: Float[Tensor, " n"],
    ray_indices: Int[Tensor, " n"],
    n_rays: int,
    backend: Backend = "auto",
) -> tuple[Float[Tensor, " n"], Float[Tensor, " n"], Float[Tensor, " n"]]:
    """Weights, transmittance (before each sample) and alpha of packed samples."""
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
    sigmas: Float[Tensor, " n"],
    ray_indices: Int[Tensor, " n"],
    n_rays: int,
    early_stop_eps: float = 1e-4,
    alpha_thre: float = 0.0,
    backend: Backend = "auto",
) -> Bool[Tensor, " n"]:
    """Samples worth shading: transmittance above ``early_stop_eps`` (early ray termination)
    and alpha above ``alpha_thre`` (empty-space skipping)."""
    _, trans, alphas = render_weights(t_starts, t_ends, sigmas, ray_indices, n_rays, backend)
    return (trans >= early_stop_eps) & (alphas >= alpha_thre)


def accumulate(
    values: Float[Tensor, "n c"], weights: Float[Tensor, " n"], ray_indices: Int[Tensor, " n"], n_rays: int
) -> Float[Tensor, "r c"]:
    """Per-ray weighted sum of sample values."""
    out = torch.zeros(n_rays, values.shape[-1], dtype=values.dtype, device=values.device)
    return out.index_add(0, ray_indices, weights[:, None] * values)


def background_colors(
    kind: BackgroundColor,
    n_rays: int,
    device: torch.device,
    training: bool,
    rgbs: Float[Tensor, "n 3"] | None = None,
    ray_indices: Int[Tensor, " n"] | None = None,
) -> Float[Tensor, "r 3"]:
    """Background per ray. ``random`` is random only in training (white at eval);
    ``last_sample`` (unbounded scenes) is the colour of each ray's last sample (black if none)."""
    if kind == "white" or (kind == "random" and not training):
        return torch.ones(n_rays, 3, device=device)
    if kind == "black":
        return torch.zeros(n_rays, 3, device=device)
    if kind == "random":
        return torch.rand(n_rays, 3, device=device)
    assert rgbs is not None and ray_indices is not None
    bg = torch.zeros(n_rays, 3, device=device, dtype=rgbs.dtype)
    last = torch.zeros(n_rays, dtype=torch.long, device=device).scatter_reduce(
        0, ray_indices, torch.arange(len(ray_indices), device=device), reduce="amax", include_self=False
    )
    has = torch.bincount(ray_indices, minlength=n_rays) > 0
    bg[has] = rgbs[last[has]]
    return bg
