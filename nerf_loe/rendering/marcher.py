"""The sampler nerfstudio models of this package use: occupancy grid + marching + rendering.

It takes the field's *density function* (world positions -> densities), never a field class, so
any field renders through it. Per batch: march the grid (no grad), optionally drop samples behind
opaque matter or in near-empty space (early termination), then render the densities and colours
the model computed for the surviving samples.

Early termination needs densities before the real forward pass. ``early_stop="grid"`` (default)
reads them from the grid's own EMA opacities, which costs one gather per sample;
``"density"`` runs the field's density without gradients (nerfacc's behaviour: exact but
roughly one extra trunk forward); ``"none"`` keeps every sample in occupied cells.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Float, Int
from nerfstudio.configs.base_config import InstantiateConfig
from torch import Tensor, nn

from nerf_loe.errors import ConfigError
from nerf_loe.rendering.backend import Backend
from nerf_loe.rendering.marching import PackedSamples, march
from nerf_loe.rendering.occupancy_grid import DensityFn, OccupancyGrid
from nerf_loe.rendering.volume_rendering import (
    BackgroundColor,
    accumulate,
    background_colors,
    render_weights,
    visible_samples,
)

EarlyStop = Literal["grid", "density", "none"]


@dataclass
class GridMarcherConfig(InstantiateConfig):
    """Occupancy-grid ray marching and packed rendering."""

    _target: type = field(default_factory=lambda: GridMarcher)
    grid_resolution: int = 64
    """Cells per axis and level of the occupancy grid."""
    grid_levels: int = 1
    """Grid levels (each twice the size of the previous); >1 for unbounded scenes."""
    samples_per_diagonal: int = 256
    """Step size = scene-box diagonal / this (finer steps: sharper, slower)."""
    cone_angle: float = 0.0
    """Step grows as max(step, cone_angle * t); 0 for bounded scenes, ~1/256 unbounded."""
    near_plane: float = 0.0
    far_plane: float = 1e10
    early_stop: EarlyStop = "grid"
    """Where early termination gets densities: grid estimate, field pre-pass, or off."""
    early_stop_eps: float = 1e-4
    """Stop a ray once transmittance falls below this."""
    alpha_thre: float = 0.0
    """Drop samples whose alpha is below this (with early_stop != none)."""
    update_every: int = 16
    warmup_steps: int = 256
    occupancy_threshold: float = 0.01
    ema_decay: float = 0.95
    backend: Backend = "auto"
    """auto: nerfacc kernels for CUDA tensors, PyTorch otherwise; torch: PyTorch everywhere."""

    def __post_init__(self) -> None:
        if self.grid_resolution < 1 or self.grid_levels < 1 or self.samples_per_diagonal < 1:
            raise ConfigError("marcher: grid_resolution, grid_levels and samples_per_diagonal must be >= 1")
        if self.early_stop not in ("grid", "density", "none"):
            raise ConfigError(f"marcher.early_stop {self.early_stop!r}: choose grid, density or none")


class GridMarcher(nn.Module):
    """Samples rays through an :class:`OccupancyGrid` and renders packed samples."""

    def __init__(self, config: GridMarcherConfig, aabb: Float[Tensor, " 6"]) -> None:
        super().__init__()
        self.config = config
        self.grid = OccupancyGrid(aabb, config.grid_resolution, config.grid_levels)
        diagonal = (aabb.flatten()[3:] - aabb.flatten()[:3]).norm().item()
        self.step_size = diagonal / config.samples_per_diagonal

    def update_grid(self, step: int, density_fn: DensityFn) -> None:
        if step % self.config.update_every == 0:
            self.grid.update(
                step,
                density_fn,
                self.step_size,
                self.config.occupancy_threshold,
                self.config.ema_decay,
                self.config.warmup_steps,
            )

    @torch.no_grad()
    def sample(
        self, rays_o: Float[Tensor, "r 3"], rays_d: Float[Tensor, "r 3"], density_fn: DensityFn | None = None
    ) -> PackedSamples:
        """Packed samples of the rays that are worth shading."""
        cfg = self.config
        samples = march(
            self.grid,
            rays_o,
            rays_d,
            cfg.near_plane,
            cfg.far_plane,
            self.step_size,
            cfg.cone_angle,
            stratified=self.training,
            backend=cfg.backend,
        )
        if cfg.early_stop == "none" or len(samples) == 0:
            return samples
        positions = samples.positions(rays_o, rays_d)
        if cfg.early_stop == "grid":
            sigmas = self.grid.opacity_at(positions) / self.step_size
        else:
            if density_fn is None:
                raise ConfigError("marcher.early_stop='density' needs the field's density function")
            sigmas = density_fn(positions)
        keep = visible_samples(
            samples.t_starts,
            samples.t_ends,
            sigmas,
            samples.ray_indices,
            len(rays_o),
            cfg.early_stop_eps,
            cfg.alpha_thre,
            cfg.backend,
        )
        return samples.subset(keep)

    def render(
        self,
        samples: PackedSamples,
        sigmas: Float[Tensor, " n"],
        rgbs: Float[Tensor, "n 3"],
        n_rays: int,
        background: BackgroundColor,
    ) -> dict[str, Tensor]:
        """Composite colour, accumulation and expected depth per ray."""
        weights, _, _ = render_weights(
            samples.t_starts, samples.t_ends, sigmas, samples.ray_indices, n_rays, self.config.backend
        )
        t_mid = (samples.t_starts + samples.t_ends)[:, None] / 2
        acc = accumulate(torch.ones_like(t_mid), weights, samples.ray_indices, n_rays)
        bg = background_colors(background, n_rays, sigmas.device, self.training, rgbs, samples.ray_indices)
        rgb = accumulate(rgbs, weights, samples.ray_indices, n_rays) + (1.0 - acc) * bg
        depth = accumulate(t_mid, weights, samples.ray_indices, n_rays) / acc.clamp(min=1e-10)
        counts: Int[Tensor, " r"] = torch.bincount(samples.ray_indices, minlength=n_rays)
        return {
            "rgb": rgb,
            "accumulation": acc,
            "depth": depth,
            "background": bg,
            "num_samples_per_ray": counts,
        }
