"""Ray / axis-aligned box intersection."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


def ray_aabb_intersect(
    rays_o: Float[Tensor, "r 3"], rays_d: Float[Tensor, "r 3"], aabb: Float[Tensor, " 6"]
) -> tuple[Float[Tensor, " r"], Float[Tensor, " r"]]:
    """Entry and exit distances of each ray through the box ``[min_xyz, max_xyz]``.

    A ray that misses has ``t_exit < t_enter``; a ray starting inside has ``t_enter < 0``.
    """
    safe_d = torch.where(rays_d.abs() < 1e-12, torch.full_like(rays_d, 1e-12), rays_d)
    t0 = (aabb[:3] - rays_o) / safe_d
    t1 = (aabb[3:] - rays_o) / safe_d
    t_enter = torch.minimum(t0, t1).amax(dim=-1)
    t_exit = torch.maximum(t0, t1).amin(dim=-1)
    return t_enter, t_exit
