"""Ray marching through an occupancy grid into packed samples.

Samples step from the ray's entry into the grid (or the near plane) with ``dt = max(step_size,
cone_angle * t)`` (constant steps when ``cone_angle = 0``, growing with distance otherwise), and
a sample is kept when the grid cell at its midpoint is occupied. Output is *packed*: flat arrays
of ray index, t_start and t_end, sorted by ray. The torch backend is vectorised over all
candidates (closed-form step positions, no loop over rays); the nerfacc backend runs
``nerfacc.grid.traverse_grids`` on the same grid buffers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from nerf_loe.rendering.backend import Backend, resolve_backend
from nerf_loe.rendering.occupancy_grid import OccupancyGrid
from nerf_loe.rendering.rays import ray_aabb_intersect


@dataclass
class PackedSamples:
    """Samples of many rays in one flat list, sorted by ray index."""

    ray_indices: Int[Tensor, " n"]
    t_starts: Float[Tensor, " n"]
    t_ends: Float[Tensor, " n"]

    def __len__(self) -> int:
        return int(self.ray_indices.shape[0])

    def positions(self, rays_o: Float[Tensor, "r 3"], rays_d: Float[Tensor, "r 3"]) -> Float[Tensor, "n 3"]:
        t_mid = (self.t_starts + self.t_ends)[:, None] / 2
        return rays_o[self.ray_indices] + t_mid * rays_d[self.ray_indices]

    def subset(self, mask: Tensor) -> PackedSamples:
        return PackedSamples(self.ray_indices[mask], self.t_starts[mask], self.t_ends[mask])


def _step_positions(t0: Tensor, k: Tensor, step_size: float, cone_angle: float) -> Tensor:
    """Position of the k-th step from ``t0`` under ``dt = max(step_size, cone_angle * t)``."""
    if cone_angle <= 0:
        return t0 + k * step_size
    t_switch_min = step_size / cone_angle  # beyond this distance steps grow geometrically
    linear_steps = torch.clamp(torch.ceil((t_switch_min - t0) / step_size), min=0)
    t_switch = t0 + linear_steps * step_size
    geometric = t_switch * torch.pow(1 + cone_angle, (k - linear_steps).clamp(min=0))
    return torch.where(k <= linear_steps, t0 + k * step_size, geometric)


def _step_counts(t0: Tensor, t1: Tensor, step_size: float, cone_angle: float) -> Tensor:
    """Number of steps needed to go from ``t0`` past ``t1``."""
    span = (t1 - t0).clamp(min=0)
    if cone_angle <= 0:
        return torch.ceil(span / step_size)
    t_switch_min = step_size / cone_angle
    linear_steps = torch.clamp(torch.ceil((t_switch_min - t0) / step_size), min=0)
    t_switch = t0 + linear_steps * step_size
    linear_only = torch.ceil(span / step_size)
    geometric = linear_steps + torch.ceil(
        torch.log(t1.clamp(min=1e-10) / t_switch.clamp(min=1e-10)) / math.log(1 + cone_angle)
    ).clamp(min=0)
    return torch.where(t1 <= t_switch, linear_only, geometric)


def march_torch(
    grid: OccupancyGrid,
    rays_o: Float[Tensor, "r 3"],
    rays_d: Float[Tensor, "r 3"],
    near_plane: float,
    far_plane: float,
    step_size: float,
    cone_angle: float = 0.0,
    stratified: bool = False,
) -> PackedSamples:
    """Pure-PyTorch marching; see module docstring."""
    t_enter, t_exit = ray_aabb_intersect(rays_o, rays_d, grid.aabbs[-1])
    t0 = torch.clamp(t_enter, min=near_plane)
    t1 = torch.clamp(t_exit, max=far_plane)
    if stratified:
        t0 = t0 + torch.rand_like(t0) * step_size
    counts = torch.where(t1 > t0, _step_counts(t0, t1, step_size, cone_angle), torch.zeros_like(t0)).long()
    ray_indices = torch.repeat_interleave(torch.arange(len(rays_o), device=rays_o.device), counts)
    first = torch.cumsum(counts, 0) - counts
    k = (torch.arange(ray_indices.numel(), device=rays_o.device) - first[ray_indices]).to(rays_o.dtype)
    ray_t0, ray_t1 = t0[ray_indices], t1[ray_indices]
    t_starts = _step_positions(ray_t0, k, step_size, cone_angle)
    t_ends = torch.minimum(_step_positions(ray_t0, k + 1, step_size, cone_angle), ray_t1)
    samples = PackedSamples(ray_indices, t_starts, t_ends)
    keep = (t_ends > t_starts) & grid.is_occupied(samples.positions(rays_o, rays_d))
    return samples.subset(keep)


def march_nerfacc(
    grid: OccupancyGrid,
    rays_o: Float[Tensor, "r 3"],
    rays_d: Float[Tensor, "r 3"],
    near_plane: float,
    far_plane: float,
    step_size: float,
    cone_angle: float = 0.0,
    stratified: bool = False,
) -> PackedSamples:
    """nerfacc's CUDA traversal over the same grid buffers (CUDA tensors only)."""
    from nerfacc.grid import traverse_grids

    near = torch.full_like(rays_o[:, 0], near_plane)
    far = torch.full_like(rays_o[:, 0], far_plane)
    if stratified:
        near = near + torch.rand_like(near) * step_size
    intervals, samples, _ = traverse_grids(
        rays_o,
        rays_d,
        grid.binaries,
        grid.aabbs,
        near_planes=near,
        far_planes=far,
        step_size=step_size,
        cone_angle=cone_angle,
    )
    return PackedSamples(
        samples.ray_indices.long(), intervals.vals[intervals.is_left], intervals.vals[intervals.is_right]
    )


@torch.no_grad()
def march(
    grid: OccupancyGrid,
    rays_o: Float[Tensor, "r 3"],
    rays_d: Float[Tensor, "r 3"],
    near_plane: float = 0.0,
    far_plane: float = 1e10,
    step_size: float = 1e-2,
    cone_angle: float = 0.0,
    stratified: bool = False,
    backend: Backend = "auto",
) -> PackedSamples:
    """March rays through ``grid``; ``backend`` follows the tensors' device unless forced."""
    impl = march_nerfacc if resolve_backend(backend, rays_o) == "nerfacc" else march_torch
    return impl(grid, rays_o, rays_d, near_plane, far_plane, step_size, cone_angle, stratified)
