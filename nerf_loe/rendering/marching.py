"""Ray marching through a multi-level occupancy grid into packed samples: nerfacc 0.5.2's rule.

Both backends produce the samples of ``nerfacc.grid.traverse_grids`` (nerfacc 0.5.2,
``cuda/csrc/grid.cu``), so a model trained on one renders the same on the other. The rule, per ray:

- Steps start at the ray's near plane ``t_0 = near`` (not at the box entry) and have length
  ``dt(t) = clamp(cone_angle * t, step_size, 1e10)``; a sample is the interval ``[t, t + dt(t)]``.
- The ray's span inside the grid (the nested level boxes, clipped to ``[near, far]``) is cut at
  cell faces into cells of the finest level containing them. An **occupied** cell emits steps
  ``t -> t + dt(t)`` while the step's midpoint ``t + dt(t) / 2`` lies before the cell's exit; the
  last sample is not cut at the exit (it may run past the box). A **free** cell (and the gap from
  ``near`` to the first box entry) is skipped with the step length *frozen* at its value on entry:
  ``t -> t + n dt(t)`` for the smallest ``n >= 0`` putting the midpoint at or past the exit.

So with ``cone_angle = 0`` samples lie on the lattice ``near + k step_size`` and a lattice step is
kept exactly when its midpoint lies in an occupied cell of the span. The backends can differ only
for a step whose midpoint lies within rounding (nerfacc: float32; here float64) or ``FACE_EPS`` of
a cell face. With ``cone_angle > 0`` the
frozen skip makes positions depend on the free cells crossed, which the torch backend reproduces
by walking *runs* of cells (consecutive occupied cells, or free cells while ``dt`` is constant)
in parallel over rays, with closed-form step counts inside each run.

Example::

    >>> grid = OccupancyGrid(torch.tensor([-1.0, -1, -1, 1, 1, 1]), resolution=8)
    >>> o, d = torch.tensor([[-2.0, 0, 0]]), torch.tensor([[1.0, 0, 0]])
    >>> s = march(grid, o, d, torch.zeros(1), torch.full((1,), 1e10), step_size=0.5, backend="torch")
    >>> s.t_starts, s.t_ends  # midpoints 1.25 .. 2.75 lie in the box [1, 3] along the ray
    (tensor([1.0000, 1.5000, 2.0000, 2.5000]), tensor([1.5000, 2.0000, 2.5000, 3.0000]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from nerf_loe.rendering.backend import Backend, resolve_backend
from nerf_loe.rendering.occupancy_grid import OccupancyGrid
from nerf_loe.rendering.rays import ray_aabb_intersect

MAX_STEP = 1e10
"""Upper clamp of the step length (nerfacc's ``dt_max``)."""
FACE_EPS = 1e-6
"""The kernel's DDA crosses cell faces this much (in t) before the exact crossing."""


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


@dataclass(frozen=True)
class _Steps:
    """Step lengths ``dt(t) = clamp(cone * t, step, MAX_STEP)`` and their closed forms."""

    step: float
    cone: float

    @property
    def switch(self) -> float:
        """Distance beyond which steps grow geometrically (``cone * t > step``)."""
        return self.step / self.cone if self.cone > 0 else math.inf

    def dt(self, t: Tensor) -> Tensor:
        return torch.clamp(t * self.cone, self.step, MAX_STEP)

    def _linear_steps(self, t0: Tensor) -> Tensor:
        """Steps of constant length ``step`` taken from ``t0`` before reaching the switch."""
        return torch.clamp(torch.ceil((self.switch - t0) / self.step), min=0)

    def position(self, t0: Tensor, k: Tensor) -> Tensor:
        """``t_k`` of the recursion ``t_{i+1} = t_i + dt(t_i)`` from ``t_0 = t0``."""
        if self.cone <= 0:
            return t0 + k * self.step
        linear = self._linear_steps(t0)
        t_switch = t0 + linear * self.step
        geometric = t_switch * torch.pow(1 + self.cone, (k - linear).clamp(min=0))
        return torch.where(k <= linear, t0 + k * self.step, geometric)

    def _reached(self, t0: Tensor, k: Tensor, exit_t: Tensor) -> Tensor:
        t = self.position(t0, k)
        return t + self.dt(t) * 0.5 >= exit_t

    def steps_until(self, t0: Tensor, exit_t: Tensor) -> Tensor:
        """Smallest ``k >= 0`` whose step midpoint ``t_k + dt(t_k) / 2`` is at or past ``exit_t``."""
        k = torch.clamp(torch.ceil((exit_t - t0) / self.step - 0.5), min=0)
        if self.cone > 0:
            linear = self._linear_steps(t0)
            t_switch = t0 + linear * self.step
            ratio = exit_t / (t_switch * (1 + self.cone / 2))
            geometric = linear + torch.clamp(torch.ceil(torch.log(ratio) / math.log1p(self.cone)), min=0)
            k = torch.where(k < linear, k, geometric)
        # Closed forms round; settle the boundary cases on the recursion's own test.
        k = torch.where((k > 0) & self._reached(t0, k - 1, exit_t), k - 1, k)
        return torch.where(self._reached(t0, k, exit_t), k, k + 1)

    def skip(self, t: Tensor, exit_t: Tensor) -> Tensor:
        """Free-space skip: steps of the length frozen at ``t`` until the midpoint reaches ``exit_t``."""
        dt = self.dt(t)
        n = torch.clamp(torch.ceil((exit_t - t) / dt - 0.5), min=0)
        n = torch.where((n > 0) & (t + (n - 1) * dt + dt * 0.5 >= exit_t), n - 1, n)
        n = torch.where(t + n * dt + dt * 0.5 >= exit_t, n, n + 1)
        return t + n * dt


def _cell_exits(
    grid: OccupancyGrid,
    rays_o: Tensor,
    rays_d: Tensor,
    near: Tensor,
    far: Tensor,
) -> tuple[Float[Tensor, "r c"], Float[Tensor, "r c"], Bool[Tensor, "r c"]]:
    """Entries and exits of the cells each ray crosses (sorted, ``inf``-padded; an entry is the
    previous cell's exit) and whether each is occupied.

    Column 0 is the gap from ``near`` to the ray's first box entry (free); column ``j > 0`` is the
    cell between exits ``j - 1`` and ``j``, of the finest level containing it.
    """
    o, d = rays_o.double(), rays_d.double()
    n_rays, res = o.shape[0], grid.resolution
    boundaries, span_prev = [], None
    for level in range(grid.levels):  # finest first: a level's region excludes the finer boxes
        box = grid.aabbs[level].double()
        t_in, t_out = ray_aabb_intersect(o, d, box)
        hit = (t_out >= t_in) & (t_out > 0)
        lo = torch.where(hit, torch.minimum(torch.maximum(t_in, near), far), math.inf)
        hi = torch.where(hit, torch.minimum(torch.maximum(t_out, near), far), math.inf)
        faces = (
            box[:3]
            + (box[3:] - box[:3]) * torch.arange(res + 1, dtype=o.dtype, device=o.device)[:, None] / res
        )
        # Face crossings per axis (a zero direction gives inf or nan, which no span keeps), FACE_EPS
        # early as the kernel's DDA measures them from ``t_min + eps`` but offsets them by ``t_min``.
        t_faces = ((faces[None] - o[:, None]) / d[:, None]).reshape(n_rays, -1) - FACE_EPS
        keep = (t_faces > lo[:, None]) & (t_faces < hi[:, None])
        if span_prev is not None:
            keep &= ~((t_faces >= span_prev[0][:, None]) & (t_faces <= span_prev[1][:, None]))
        boundaries += [torch.where(keep, t_faces, math.inf), lo[:, None], hi[:, None]]
        span_prev = (lo, hi)
    exits = torch.sort(torch.cat(boundaries, dim=1), dim=1).values
    exits = exits[:, : int(torch.isfinite(exits).sum(1).max().item()) if n_rays else 0]
    entries = torch.cat([torch.full_like(exits[:, :1], -math.inf), exits[:, :-1]], dim=1)
    valid = torch.isfinite(exits) & torch.isfinite(entries)
    mid = torch.where(valid, (entries + exits) / 2, 0.0)
    points = (o[:, None] + mid[..., None] * d[:, None]).reshape(-1, 3).to(rays_o.dtype)
    occupied = grid.is_occupied(points).reshape(mid.shape) & valid
    return entries, exits, occupied


def _runs(
    entries: Float[Tensor, "r c"],
    exits: Float[Tensor, "r c"],
    occupied: Bool[Tensor, "r c"],
    near: Float[Tensor, " r"],
    steps: _Steps,
) -> tuple[Float[Tensor, "r j"], Bool[Tensor, "r j"], Int[Tensor, " r"]]:
    """Merge cells into runs that the walk can cross in one closed-form move.

    Consecutive occupied cells emit the same steps as one cell of their union. Consecutive free
    cells skip as one while the frozen step length stays ``step``: when ``near`` and every cell
    entry so far lie below ``switch - step / 2``, no ``t`` of the walk has passed the switch.
    """
    valid = torch.isfinite(exits)
    linear = (entries <= steps.switch - steps.step / 2) & (near <= steps.switch)[:, None]
    previous = torch.cat([~occupied[:, :1], occupied[:, :-1]], dim=1)  # column 0 always starts a run
    continues = (occupied == previous) & (occupied | linear)
    starts = valid & ~continues
    run_id = torch.cumsum(starts, dim=1) - 1
    n_runs = starts.sum(dim=1)
    width = int(n_runs.max().item()) if len(n_runs) else 0
    run_exit = torch.full((exits.shape[0], width), -math.inf, dtype=exits.dtype, device=exits.device)
    run_exit.scatter_reduce_(
        1, run_id.clamp(min=0), torch.where(valid, exits, -math.inf), reduce="amax", include_self=True
    )
    rows, cols = torch.nonzero(starts, as_tuple=True)
    run_occupied = torch.zeros_like(run_exit, dtype=torch.bool)
    run_occupied[rows, run_id[rows, cols]] = occupied[rows, cols]
    return run_exit, run_occupied, n_runs


def march_torch(
    grid: OccupancyGrid,
    rays_o: Float[Tensor, "r 3"],
    rays_d: Float[Tensor, "r 3"],
    near_planes: Float[Tensor, " r"],
    far_planes: Float[Tensor, " r"],
    step_size: float,
    cone_angle: float = 0.0,
) -> PackedSamples:
    """Pure-PyTorch marching by nerfacc's rule (module docstring), in float64 along each ray."""
    steps = _Steps(step_size, cone_angle)
    near, far = near_planes.double(), far_planes.double()
    run_exit, run_occupied, n_runs = _runs(*_cell_exits(grid, rays_o, rays_d, near, far), near, steps)
    first_t = torch.zeros_like(run_exit)
    counts = torch.zeros_like(run_exit, dtype=torch.long)
    t = near.clone()
    for j in range(run_exit.shape[1]):  # walk the runs of all rays in parallel
        rows = torch.nonzero(n_runs > j).squeeze(-1)
        t_row, exit_t, occ = t[rows], run_exit[rows, j], run_occupied[rows, j]
        n = torch.where(occ, steps.steps_until(t_row, exit_t), 0.0)
        first_t[rows, j], counts[rows, j] = t_row, n.long()
        t[rows] = torch.where(occ, steps.position(t_row, n), steps.skip(t_row, exit_t))
    counts, first_t = counts.flatten(), first_t.flatten()
    run_of_sample = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
    k = (
        torch.arange(len(run_of_sample), device=counts.device)
        - (torch.cumsum(counts, 0) - counts)[run_of_sample]
    )
    t0, k = first_t[run_of_sample], k.double()
    return PackedSamples(
        run_of_sample // max(run_exit.shape[1], 1),
        steps.position(t0, k).to(rays_o.dtype),
        steps.position(t0, k + 1).to(rays_o.dtype),
    )


def march_nerfacc(
    grid: OccupancyGrid,
    rays_o: Float[Tensor, "r 3"],
    rays_d: Float[Tensor, "r 3"],
    near_planes: Float[Tensor, " r"],
    far_planes: Float[Tensor, " r"],
    step_size: float,
    cone_angle: float = 0.0,
) -> PackedSamples:
    """nerfacc 0.5.2's CUDA traversal over the same grid buffers (CUDA tensors only)."""
    from nerfacc.grid import traverse_grids

    intervals, samples = traverse_grids(  # 0.5.2 returns (RayIntervals, RaySamples)
        rays_o,
        rays_d,
        grid.binaries,
        grid.aabbs,
        near_planes=near_planes,
        far_planes=far_planes,
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
    near_planes: Float[Tensor, " r"],
    far_planes: Float[Tensor, " r"],
    step_size: float = 1e-2,
    cone_angle: float = 0.0,
    backend: Backend = "auto",
) -> PackedSamples:
    """March rays through ``grid`` from per-ray ``near_planes`` to ``far_planes`` (jitter the near
    planes by ``U[0, step_size)`` for stratified sampling, as nerfacc does); ``backend`` follows the
    tensors' device unless forced."""
    impl = march_nerfacc if resolve_backend(backend, rays_o) == "nerfacc" else march_torch
    return impl(grid, rays_o, rays_d, near_planes, far_planes, step_size, cone_angle)
