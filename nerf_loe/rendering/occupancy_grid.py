"""Multi-level occupancy grid over the scene box (nerfacc's layout and update rule).

Level ``l`` covers the scene box enlarged ``2^l`` times about its centre (one level for bounded
scenes, several for unbounded ones), at ``resolution^3`` cells. Each cell keeps an EMA of the
opacity ``density * step_size`` sampled at a random point in it; a cell is occupied when its
value exceeds ``min(mean, threshold)``. During warm-up every cell is re-evaluated; afterwards a
random quarter of the cells plus as many occupied ones. The buffers have the same layout as
``nerfacc.OccGridEstimator``, so the CUDA backend marches them with nerfacc's kernels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

DensityFn = Callable[[Float[Tensor, "n 3"]], Float[Tensor, " n"]]


class OccupancyGrid(nn.Module):
    """Binary + EMA occupancy grid; see module docstring."""

    def __init__(self, aabb: Float[Tensor, " 6"], resolution: int = 64, levels: int = 1) -> None:
        super().__init__()
        aabb = aabb.detach().float().flatten()
        center, half = (aabb[:3] + aabb[3:]) / 2, (aabb[3:] - aabb[:3]) / 2
        aabbs = torch.stack(
            [torch.cat([center - half * 2**lvl, center + half * 2**lvl]) for lvl in range(levels)]
        )
        self.resolution = resolution
        self.levels = levels
        self.register_buffer("aabbs", aabbs)
        self.register_buffer("occs", torch.zeros(levels, resolution**3))
        self.register_buffer(
            "binaries", torch.ones(levels, resolution, resolution, resolution, dtype=torch.bool)
        )
        axes = torch.arange(resolution)
        coords = torch.stack(torch.meshgrid(axes, axes, axes, indexing="ij"), -1).reshape(-1, 3)
        self.register_buffer("cell_coords", coords, persistent=False)

    @property
    def cells_per_level(self) -> int:
        return self.resolution**3

    def occupied_fraction(self) -> float:
        return self.binaries.float().mean().item()

    def cell_of(
        self, x: Float[Tensor, "n 3"]
    ) -> tuple[Int[Tensor, " n"], Int[Tensor, " n"], Bool[Tensor, " n"]]:
        """Level (the finest containing ``x``), flat cell index, and whether ``x`` is in the grid."""
        center = (self.aabbs[0, :3] + self.aabbs[0, 3:]) / 2
        half = (self.aabbs[0, 3:] - self.aabbs[0, :3]) / 2
        extent = ((x - center).abs() / half).amax(dim=-1)
        level = torch.ceil(torch.log2(extent.clamp(min=1.0))).long()
        inside = level < self.levels
        level = level.clamp(max=self.levels - 1)
        box = self.aabbs[level]
        unit = (x - box[:, :3]) / (box[:, 3:] - box[:, :3])
        ijk = (unit * self.resolution).long().clamp(0, self.resolution - 1)
        flat = (ijk[:, 0] * self.resolution + ijk[:, 1]) * self.resolution + ijk[:, 2]
        return level, flat, inside & (unit >= 0).all(-1) & (unit <= 1).all(-1)

    def is_occupied(self, x: Float[Tensor, "n 3"]) -> Bool[Tensor, " n"]:
        level, flat, inside = self.cell_of(x)
        return self.binaries.view(self.levels, -1)[level, flat] & inside

    def opacity_at(self, x: Float[Tensor, "n 3"]) -> Float[Tensor, " n"]:
        """The cell's EMA opacity (density * step_size) at ``x``: a cheap density upper estimate."""
        level, flat, inside = self.cell_of(x)
        return self.occs[level, flat] * inside

    @torch.no_grad()
    def update(
        self,
        step: int,
        density_fn: DensityFn,
        step_size: float,
        threshold: float = 0.01,
        ema_decay: float = 0.95,
        warmup_steps: int = 256,
        chunk: int = 65536,
        wait_for_matter: bool = False,
    ) -> None:
        """Re-evaluate cells (all during warm-up, else random + occupied) and re-binarise; with
        ``wait_for_matter`` the binaries stay as they are while no cell's opacity exceeds
        ``threshold``."""
        for lvl in range(self.levels):
            if step < warmup_steps:
                cells = torch.arange(self.cells_per_level, device=self.occs.device)
            else:
                quarter = self.cells_per_level // 4
                uniform = torch.randint(self.cells_per_level, (quarter,), device=self.occs.device)
                occupied = torch.nonzero(self.binaries[lvl].flatten()).squeeze(-1)
                if occupied.numel() > quarter:
                    occupied = occupied[torch.randint(occupied.numel(), (quarter,), device=self.occs.device)]
                cells = torch.cat([uniform, occupied])
            coords = self.cell_coords[cells].float()
            unit = (coords + torch.rand_like(coords)) / self.resolution
            box = self.aabbs[lvl]
            x = box[:3] + unit * (box[3:] - box[:3])
            opacity = torch.cat([density_fn(part) for part in x.split(chunk)]) * step_size
            self.occs[lvl, cells] = torch.maximum(self.occs[lvl, cells] * ema_decay, opacity)
        if wait_for_matter and not (self.occs > threshold).any():
            return
        cutoff = torch.clamp(self.occs.mean(), max=threshold)
        self.binaries = (self.occs > cutoff).view(self.binaries.shape)
